"""refit-head: the tag head refitted on frozen fine-tuned features, chosen on validation."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from musicssl.engine.bundle import load_bundle
from musicssl.training import checkpoint as ckpt
from musicssl.training import metrics
from musicssl.training.cli import main
from musicssl.training.config import ExportConfig, RefitConfig, load_config
from musicssl.training.export import export
from musicssl.training.finetune import finetune
from musicssl.training.head_refit import ExcerptSet, fit_head, refit_head, track_probs
from test_finetune import _finetune_config
from test_pretrain import corpus, one_thread  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    return corpus(tmp_path_factory)


def _separable(seed: int, tracks: int = 40, excerpts: int = 3, dim: int = 8) -> ExcerptSet:
    """Tag 0 follows the sign of z's first axis, tag 1 of its second (per track)."""
    g = np.random.default_rng(seed)
    centres = g.normal(size=(tracks, dim))
    z = np.repeat(centres, excerpts, axis=0) + 0.1 * g.normal(size=(tracks * excerpts, dim))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    targets = (centres[:, :2] > 0).astype(np.float32)
    return ExcerptSet(
        z=torch.from_numpy(z.astype(np.float32)),
        track=np.repeat(np.arange(tracks), excerpts),
        targets=targets,
        mask=np.ones_like(targets, dtype=bool),
    )


def test_fit_head_learns_a_linear_tag_and_ignores_unknown_labels():
    train, test = _separable(0), _separable(1)
    start = torch.zeros(2, 8)
    head = fit_head(train, start, weight_decay=1e-4, max_iter=100)
    scores = metrics.tagging_metrics(track_probs(test, head), test.targets, test.mask)
    assert scores["roc_auc"] > 0.95 and scores["n_tags"] == 2

    # Unknown labels must not pull the head: flipping every masked-out target changes nothing.
    partial = ExcerptSet(train.z, train.track, train.targets.copy(), train.mask.copy())
    partial.mask[::2, 1] = False
    flipped = ExcerptSet(partial.z, partial.track, partial.targets.copy(), partial.mask)
    flipped.targets[~partial.mask] = 1.0 - flipped.targets[~partial.mask]
    a = fit_head(partial, start, 1e-4, 100)
    b = fit_head(flipped, start, 1e-4, 100)
    torch.testing.assert_close(a, b)

    # The penalty shrinks the weights (what the validation grid trades against fit).
    strong = fit_head(train, start, weight_decay=1e-1, max_iter=100)
    assert strong.norm() < 0.5 * head.norm()


def test_refit_after_a_short_finetune_beats_its_head_and_exports(music, tmp_path, capsys):
    """Fine-tuning stopped early leaves an under-fitted head; the refit only moves the head."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # small batches trip collapse checks
        run = finetune(
            _finetune_config(
                music,
                tmp_path / "ft",
                steps=6,
                batch_size=8,
                eval_every=3,
                ratio=1.0,
                alpha=0.1,
                **{"optim.lr": 1e-4},
            )
        )
    before, _, before_state = ckpt.load_model(run)

    out = refit_head(
        load_config(RefitConfig, None, {"checkpoint": str(run), "device": "cpu", "progress": False})
    )
    assert out == run / "refit"
    summary = json.loads((out / "refit.json").read_text("utf-8"))
    tried = summary["validation"]
    assert set(tried) == {"fine-tuned head"} | {
        f"weight_decay={wd:g}" for wd in RefitConfig().weight_decays
    }
    chosen = summary["chosen"]
    assert chosen != "fine-tuned head", tried
    assert tried[chosen]["roc_auc"] > tried["fine-tuned head"]["roc_auc"]
    assert summary["train_tracks"] > 0 and summary["val_tracks"] > 0

    after, _, state = ckpt.load_model(out)
    for (name, p), q in zip(
        before.encoder.state_dict().items(), after.encoder.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name  # every similarity vector stays the same
    assert not torch.equal(before.tag_head.weight, after.tag_head.weight)
    assert state["config"]["data"] == before_state["config"]["data"]
    assert state["metrics"]["val_roc_auc"] == pytest.approx(tried[chosen]["roc_auc"])

    # Export reads the refit run like any run: thresholds on the same split, and provenance.
    result = export(load_config(ExportConfig, None, {"checkpoint": str(out), "device": "cpu"}))
    bundle = load_bundle(result.path)
    assert bundle.config.provenance["head_refit"]["chosen"] == chosen
    assert bundle.config.provenance["stage"] == "finetune"
    assert bundle.config.provenance["thresholds"]["val_tracks"] == summary["val_tracks"]

    # The CLI prints the validation table with the chosen row marked.
    capsys.readouterr()
    assert main(["refit-head", str(run), "--out", str(tmp_path / "cli"), "--device", "cpu",
                 "--no-progress", "--set", "weight_decays=[1e-6]"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "fine-tuned head" in printed and "weight_decay=1e-06" in printed
    assert printed.count("*") == 1

    # A bundle has no training split to refit on: a clear settings error (exit 2).
    assert main(["refit-head", str(result.path), "--out", str(tmp_path / "x")]) == 2
    assert main(["refit-head", str(run), "--set", "weight_decays=[]"]) == 2
