"""Fine-tuning (metric learning + SSL auxiliary), measure-ratio, evaluation and export -> engine."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from musicssl.engine.bundle import load_bundle
from musicssl.engine.library import Library
from musicssl.training import checkpoint as ckpt
from musicssl.training.config import (
    ConfigError,
    EvaluateConfig,
    ExportConfig,
    FinetuneConfig,
    load_config,
)
from musicssl.training.evaluate import evaluate, widen_mask
from musicssl.training.export import MIN_THRESHOLD, choose_thresholds, export
from musicssl.training.finetune import Finetuner, finetune, masked_bce, measure_ratio
from musicssl.training.logs import read_csv
from test_pretrain import TINY, corpus, data_overrides, one_thread  # noqa: F401 - fixture

# A larger validation/test share than the default so the tag scores are not 2-track coin flips.
SPLIT = {"data.split": [0.5, 0.2, 0.3]}
SSL = {"ssl_params": {"projection_dim": 16}}


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    return corpus(tmp_path_factory)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # small batches trip collapse checks
        yield


def _finetune_config(music, out, **extra):
    return load_config(
        FinetuneConfig,
        None,
        {**TINY, **data_overrides(music), **SPLIT, **SSL, "out": str(out), **extra},
    )


def test_masked_bce_counts_known_labels_only():
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([[True, False], [False, False]])
    loss = masked_bce(logits, targets, mask)
    assert float(loss.detach()) == pytest.approx(
        float(torch.nn.functional.softplus(torch.tensor(-2.0)))
    )
    loss.backward()
    assert logits.grad[0, 1] == 0 and logits.grad[1].abs().sum() == 0
    assert float(masked_bce(logits, targets, torch.zeros_like(mask)).detach()) == 0.0
    # "labelled" policy: a row with a known positive knows its other tags are negatives
    widened = widen_mask(targets, mask, "labelled")
    assert widened.tolist() == [[True, True], [False, False]]
    assert widen_mask(targets, mask, "explicit").tolist() == mask.tolist()


@pytest.mark.parametrize("as_tensor", [False, True])
def test_mixed_negatives_keep_tag_by_tag_rows_partial(as_tensor):
    """Genre-list rows (positives only) know every tag; a row with an explicit "no" (teacher
    labels) leaves the tags it did not mention unknown, under both numpy and torch."""
    targets = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 0]], np.float32)
    mask = np.array([[True, False, False], [True, True, False], [False, False, False]])
    if as_tensor:
        targets, mask = torch.from_numpy(targets), torch.from_numpy(mask)
    widened = widen_mask(targets, mask, "mixed")
    assert widened.tolist() == [[True, True, True], [True, True, False], [False, False, False]]
    assert widen_mask(targets, mask, "labelled").tolist()[1] == [True, True, True]
    with pytest.raises(ConfigError, match="mixed"):
        widen_mask(targets, mask, "sometimes")


def test_finetune_on_partial_tags_beats_the_frozen_probe(music, tmp_path):
    """Half the training labels; same random-init encoder on both sides (same seed)."""
    common = {**TINY, **data_overrides(music), **SPLIT, "data.label_fraction": 0.5}
    frozen = evaluate(
        load_config(
            EvaluateConfig,
            None,
            {
                **common,
                "out": str(tmp_path / "frozen"),
                "baselines": ["random-init"],
                "probes": ["linear"],
                "fractions": [0.5],
                "probe_epochs": 200,
            },
        )
    )
    frozen_auc = frozen["features"]["random-init"]["tagging"]["linear"]["0.5"]["roc_auc"]

    run = finetune(
        _finetune_config(
            music,
            tmp_path / "ft",
            steps=40,
            batch_size=8,
            eval_every=10,
            checkpoint_every=0,
            ratio=1.0,
            alpha=0.1,
            **{"optim.lr": 3e-3, "data.label_fraction": 0.5},
        )
    )
    rows = read_csv(run / "log.csv")
    assert all(math.isfinite(r["loss_ml"]) and math.isfinite(r["loss_ssl"]) for r in rows)
    assert any("val_roc_auc" in r for r in rows)
    tuned = evaluate(
        load_config(
            EvaluateConfig,
            None,
            {
                **common,
                "checkpoint": str(run),
                "out": str(tmp_path / "tuned"),
                "baselines": [],
                "probes": ["linear"],
                "fractions": [0.5],
                "probe_epochs": 200,
            },
        )
    )
    head_auc = tuned["features"]["model"]["tagging"]["head"]["trained"]["roc_auc"]
    assert tuned["features"]["model"]["tagging"]["head"]["trained"]["n_tags"] == 2
    assert head_auc >= 0.95 and head_auc > frozen_auc + 0.05, (head_auc, frozen_auc)
    for name in ("results.json", "results.md", "results.png"):
        assert (tmp_path / "tuned" / name).stat().st_size > 100


def test_measure_ratio_feeds_lambda_and_finetune_resumes(music, tmp_path):
    """Also with album-run SSL batches, whose order must survive the resume like any other."""
    out = tmp_path / "run"
    common = {"batch_size": 6, "ratio_steps": 3, "steps": 4, "eval_every": 2, "log_every": 1}
    common["ssl_album_run"] = 2
    result = measure_ratio(_finetune_config(music, out, **common))
    saved = json.loads((out / "ratio.json").read_text())
    assert saved["ratio"] == pytest.approx(result["ml_loss"] / result["ssl_loss"])
    assert (out / "ratio" / "ml" / "log.csv").is_file() and (out / "ratio" / "ssl").is_dir()

    run = Finetuner(_finetune_config(music, out, alpha=0.5, stop_after=2, **common))
    run.run()
    albums = [item.album for item in run.ssl_batches.dataset.items]
    _, batch = next(run.ssl_batches.iterate(0))
    index = batch["index"].tolist()  # batch 6 = three runs of two album mates
    assert all(albums[i] == albums[j] for i, j in zip(index[::2], index[1::2], strict=True))
    assert run.ratio == pytest.approx(saved["ratio"]) and run.lam == pytest.approx(
        0.5 / saved["ratio"]
    )
    assert ckpt.load_checkpoint(ckpt.latest_checkpoint(out))["step"] == 2
    resumed = Finetuner(_finetune_config(music, out, alpha=0.5, resume="latest", **common))
    resumed.run()
    assert resumed.step == 4
    assert [r["step"] for r in read_csv(out / "log.csv")] == [1, 2, 3, 4]
    best = ckpt.load_checkpoint(out / "best.pt")
    assert best["bundle_config"]["tags"] == ["high", "low"]


def test_choose_thresholds_per_tag():
    probs = np.array([[0.9, 0.2, 0.05], [0.7, 0.3, 0.04], [0.8, 0.1, 0.01], [0.4, 0.25, 0.02]])
    probs = np.vstack([probs, [[0.2, 0.1, 0.01]]])
    targets = np.array([[1, 0, 1], [1, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]], np.float32)
    thresholds = choose_thresholds(probs, targets)
    assert 0.4 < thresholds[0] < 0.7  # three positives: separates them exactly
    assert thresholds[1] == 0.5  # no positive to tune on
    assert thresholds[2] == 0.5  # one positive scoring 0.05 must not set the threshold to 0.045
    # A head that scores every track alike: its F1 optimum is "everything", which is no tagger.
    flat = choose_thresholds(np.full((6, 1), 0.03), np.array([[1], [1], [1], [0], [1], [0]]))
    assert flat == [0.5]
    # A tag the head separates, but only at low probabilities: the optimum (0.095) is floored.
    low = np.array([[0.12], [0.15], [0.11], [0.05], [0.02], [0.08]])
    yes = np.array([[1], [1], [1], [0], [0], [0]])
    assert choose_thresholds(low, yes, floor=0.0)[0] == pytest.approx(0.095)
    assert choose_thresholds(low, yes) == [0.2]
    # Where labels cannot place a threshold, the caller's fallback stands (held-out tuning).
    assert choose_thresholds(probs, targets, fallback=[0.1, 0.6, 0.7])[1:] == [0.6, 0.7]


def test_library_finetune_export_install_and_analyze(music, tmp_path):
    """Partial user tags in a library DB -> fine-tune -> export --install -> analyze in the app."""
    db_path = tmp_path / "lib.db"
    with Library(db_path) as library:
        library.scan([music / "music"])
        tracks = library.tracks()
        for t in tracks:
            name = t["path"].rsplit("/", 1)[-1]
            if name.startswith("low") and name < "low08":
                library.set_user_tag(t["id"], "deep")
            elif name.startswith("high") and name < "high04":
                library.set_user_tag(t["id"], "deep", positive=False)  # an explicit "no"

    run = finetune(
        _finetune_config(
            music,
            tmp_path / "ft",
            steps=30,
            batch_size=8,
            eval_every=10,
            ratio=1.0,
            alpha=0.1,
            **{"optim.lr": 3e-3, "data.folder": None, "data.library": str(db_path)},
        )
    )
    result = export(load_config(ExportConfig, None, {"checkpoint": str(run), "device": "cpu"}),
                    use_in=str(db_path))  # fmt: skip
    bundle = load_bundle(result.path)
    assert bundle.config.trained and bundle.config.tags == ["deep", "high", "low"]
    assert all(0.0 <= t <= 1.0 for t in bundle.config.thresholds)
    provenance = bundle.config.provenance
    assert provenance["stage"] == "finetune" and provenance["data"]["library"] == str(db_path)
    assert "git_commit" in provenance and provenance["thresholds"]["val_tracks"] > 0
    assert result.installed is not None and result.installed.model_id == result.model_id

    # Naming the training library again keeps training's split (other settings would tune the
    # thresholds on tracks the model trained on), so the bundle comes out the same.
    again = export(
        load_config(
            ExportConfig,
            None,
            {"checkpoint": str(run), "device": "cpu", "out": str(tmp_path / "again"),
             "data.library": str(db_path), "data.split": [0.5, 0.5, 0.0]},
        )
    )  # fmt: skip
    assert load_bundle(again.path).config.thresholds == bundle.config.thresholds
    assert load_bundle(again.path).config.provenance["data"] == provenance["data"]

    # A held-out library sets the thresholds of the tags its labels cover; the rest keep the
    # training split's. Here it says "deep" for the low tracks and "not deep" for the high ones.
    held_out_db = tmp_path / "held-out.db"
    with Library(held_out_db) as library:
        library.scan([music / "music"])
        for t in library.tracks():
            name = t["path"].rsplit("/", 1)[-1]
            library.set_user_tag(t["id"], "deep", positive=name.startswith("low"))
    settings = {"checkpoint": str(run), "device": "cpu", "out": str(tmp_path / "held")}
    settings_held = {**settings, "threshold_library": str(held_out_db)}
    held = export(load_config(ExportConfig, None, settings_held))
    record = held.config.provenance["thresholds"]["held_out"]
    assert record["library"] == str(held_out_db) and record["tracks"] == len(tracks)
    assert "deep" in record["tags"]
    for tag, before, after in zip(bundle.config.tags, bundle.config.thresholds,
                                  held.config.thresholds, strict=True):  # fmt: skip
        assert (after == before) or tag in record["tags"], tag
    assert MIN_THRESHOLD <= held.config.thresholds[held.config.tags.index("deep")] <= 1.0
    with pytest.raises(ConfigError, match="does not exist"):
        export(load_config(ExportConfig, None, {**settings, "threshold_library": "nope.db"}))

    with Library(db_path) as library:
        assert library.active_model().model_id == result.model_id
        report = library.analyze()
        assert report.analyzed == len(tracks) and report.model_trained
        auto = [
            tag
            for t in library.tracks()
            for tag in library.tags(t["id"])
            if tag["source"] == "auto"
        ]
        assert auto, "a trained bundle must write auto tags"
        assert {a["tag"] for a in auto} <= {"deep", "high", "low"}
        similar = library.similar([tracks[0]["id"]], n=5)
        assert len(similar) == 5 and tracks[0]["id"] not in [r.track_id for r in similar]
