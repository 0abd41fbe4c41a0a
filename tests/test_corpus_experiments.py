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
