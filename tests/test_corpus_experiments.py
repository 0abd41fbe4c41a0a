"""EXPERIMENTS.md is generated from results on disk only: unrun arms must say so."""

from __future__ import annotations

import json

from musicssl.training.experiments import ExperimentsConfig, render_doc


def _entry(roc: float) -> dict:
    probe = {"mlp": {"1": {"roc_auc": roc, "pr_auc": roc / 2}}}
    return {
        "probes": {t: probe for t in ("tags", "instrument", "genre", "tempo", "mode")},
        "retrieval": {"R@1": 0.5, "R@4": 0.75, "M@1": 0.5, "M@10": 0.625},
        "identification": 0.875,
    }


def test_nothing_run_means_no_numbers(tmp_path):
    doc = render_doc(ExperimentsConfig(corpus=tmp_path / "corpus", out=tmp_path / "runs"))
    assert "(a) objectives not run: contrastive, byol, clustering, barlow, vicreg, playlist" in doc
    assert "(c) baselines not run" in doc and "(b) incomplete" in doc
    assert "musicssl-train experiments --corpus" in doc
    assert not [line for line in doc.splitlines() if line.startswith("|")]  # no table, no score


def test_finished_runs_are_reported_and_the_rest_listed(tmp_path):
    cfg = ExperimentsConfig(corpus=tmp_path / "corpus", out=tmp_path / "runs")
    (cfg.out / "c").mkdir(parents=True)
    baselines = {
        "features": {"mfcc": _entry(0.8125), "random-init": _entry(0.8375)},
        "config": {"excerpts": 8},  # what it was scored with, whatever today's default
    }
    (cfg.out / "c" / "results.json").write_text(json.dumps(baselines))
    run = cfg.out / "a" / "playlist"
    (run / "heldout").mkdir(parents=True)
    (run / "heldout" / "results.json").write_text(
        json.dumps({"features": {"playlist": _entry(0.9125)}})
    )
    (run / "experiment.json").write_text(json.dumps({"minutes": 7.5, "steps": 300}))
    doc = render_doc(cfg)
    assert "| playlist | 0.912 | 0.456 | 0.500 | 0.750 | 0.500 | 0.625 | 0.875 | 7.5 |" in doc
    assert "| mfcc (baseline) | 0.812 |" in doc
    assert "embedded from 8 evenly spread 3 s excerpts" in doc
    assert "objectives not run: contrastive, byol, clustering, barlow, vicreg\n" in doc
    assert "(c) baselines not run" not in doc


def test_arm_b_compares_heads_and_encoders_under_the_same_probe(tmp_path):
    cfg = ExperimentsConfig(corpus=tmp_path / "corpus", out=tmp_path / "runs")
    (cfg.out / "b" / "frozen-probe").mkdir(parents=True)
    frozen = {f: {"roc_auc": 0.5 + f / 4, "pr_auc": 0.25, "n_tags": 29} for f in (0.01, 0.1, 1)}
    (cfg.out / "b" / "frozen-probe" / "results.json").write_text(
        json.dumps(
            {
                "features": {
                    "frozen-probe SSL": {
                        "probes": {"tags": {"mlp": {f"{f:g}": s for f, s in frozen.items()}}}
                    }
                }
            }
        )
    )
    run = cfg.out / "b" / "metric+ssl-1" / "heldout"
    run.mkdir(parents=True)
    entry = {
        "head": {"roc_auc": 0.625, "pr_auc": 0.5, "n_tags": 29},
        "probes": {"tags": {"mlp": {"1": {"roc_auc": 0.875, "pr_auc": 0.75, "n_tags": 29}}}},
    }
    (run / "results.json").write_text(json.dumps({"features": {"metric+ssl": entry}}))
    doc = render_doc(cfg)
    assert "| metric+ssl | not run | not run | 0.625 / 0.500 (n=29) |" in doc
    assert "| metric+ssl | not run | not run | 0.875 / 0.750 (n=29) |" in doc
    assert "| contrastive encoder, frozen | 0.502 / 0.250 (n=29) |" in doc
    assert "(b) incomplete" in doc  # three fine-tuning variants and two fractions have no result


def test_seeds_of_an_objective_are_averaged_with_their_spread(tmp_path):
    cfg = ExperimentsConfig(corpus=tmp_path / "corpus", out=tmp_path / "runs", seeds=3)
    for folder, roc in (("vicreg", 0.875), ("vicreg-seed1", 0.9375)):
        run = cfg.out / "a" / folder
        (run / "heldout").mkdir(parents=True)
        (run / "heldout" / "results.json").write_text(
            json.dumps({"features": {"vicreg": _entry(roc)}})
        )
        (run / "experiment.json").write_text(json.dumps({"minutes": roc * 8, "steps": 300}))
    doc = render_doc(cfg)
    assert "| vicreg (2 seeds) | 0.906 ± 0.031 | 0.453 ± 0.016 | 0.500 ± 0.000 |" in doc
    assert "| 7.25 |" in doc
    assert "(a) fewer than 3 seeds: vicreg (2 seeds)" in doc
    assert "--seeds 3" in doc


def test_fine_tuning_seeds_of_arm_b_are_averaged_with_their_spread(tmp_path):
    cfg = ExperimentsConfig(corpus=tmp_path / "corpus", out=tmp_path / "runs", seeds=3)
    for folder, roc in (("supervised-1", 0.75), ("supervised-1-seed1", 0.875)):
        run = cfg.out / "b" / folder / "heldout"
        run.mkdir(parents=True)
        entry = {
            "head": {"roc_auc": roc, "pr_auc": roc / 2, "n_tags": 29},
            "probes": {"tags": {"mlp": {"1": {"roc_auc": roc, "pr_auc": 0.5, "n_tags": 29}}}},
        }
        (run / "results.json").write_text(json.dumps({"features": {"supervised": entry}}))
    # A seed folder without its predecessor is not counted (seeds are read 0, 1, 2, ...).
    (cfg.out / "b" / "supervised-0.1-seed1" / "heldout").mkdir(parents=True)
    doc = render_doc(cfg)
    assert (
        "| supervised (2 seeds) | not run | not run | 0.812 ± 0.062 / 0.406 ± 0.031 (n=29) |" in doc
    )
    assert "(b) fewer than 3 fine-tuning seeds: supervised\n" in doc
