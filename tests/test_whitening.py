"""whiten: the track vector's whitening, fitted on frozen features and carried by the bundle."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from musicssl.engine.bundle import load_bundle
from musicssl.training import checkpoint as ckpt
from musicssl.training.cli import main
from musicssl.training.config import ExportConfig, RefitConfig, WhitenConfig, load_config
from musicssl.training.export import export
from musicssl.training.finetune import finetune
from musicssl.training.head_refit import refit_head
from musicssl.training.metrics import identification_accuracy
from musicssl.training.whitening import fit_whitening, whitening, within_track_whitening
from test_finetune import _finetune_config
from test_pretrain import corpus, one_thread  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    return corpus(tmp_path_factory)


def _correlated(rows: int, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    mixing = g.normal(size=(6, 6)) * np.array([10.0, 3.0, 1.0, 0.3, 0.1, 0.03])
    return g.normal(size=(rows, 6)) @ mixing + 5.0


def test_full_whitening_gives_unit_covariance_and_partial_keeps_some_spread():
    h = _correlated(4000)
    mean, matrix = whitening(h, alpha=1.0, eps=1e-12)
    np.testing.assert_allclose(mean, h.mean(0))
    white = (h - mean) @ matrix
    np.testing.assert_allclose(np.cov(white, rowvar=False), np.eye(6), atol=1e-5)

    # alpha 0.5: standard deviations become the square roots of the original ones.
    _, half = whitening(h, alpha=0.5, eps=1e-12)
    spread = np.sort(np.linalg.eigvalsh(np.cov((h - mean) @ half, rowvar=False)))
    original = np.sort(np.linalg.eigvalsh(np.cov(h, rowvar=False)))
    np.testing.assert_allclose(spread, np.sqrt(original), rtol=1e-4)

    # eps floors the variances: the weakest direction is no longer blown up to unit variance.
    _, floored = whitening(h, alpha=1.0, eps=0.01)
    assert np.cov((h - mean) @ floored, rowvar=False).trace() < 6 - 1

    for bad in (h[:1], np.ones((10, 6))):
        with pytest.raises(ValueError):
            whitening(bad, 1.0, 0.01)


def _tracks(n_tracks: int, excerpts: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Excerpts whose track identity lives in weak directions (0-2) while strong ones (3-5)
    wander within each track, the situation a style-trained encoder leaves behind."""
    g = np.random.default_rng(seed)
    identity = g.normal(size=(n_tracks, 1, 6)) * np.array([0.3, 0.3, 0.3, 0.05, 0.05, 0.05])
    wander = g.normal(size=(n_tracks, excerpts, 6)) * np.array([0.05, 0.05, 0.05, 3.0, 3.0, 3.0])
    x = (identity + wander).reshape(-1, 6)
    return x, np.repeat(np.arange(n_tracks), excerpts)


def test_within_track_whitening_evens_out_the_spread_inside_tracks_and_finds_tracks_again():
    x, track = _tracks(300, 16, seed=0)
    mean, pca = whitening(x, alpha=1.0, eps=1e-9)
    within = within_track_whitening((x - mean) @ pca, track, alpha=1.0, eps=1e-9)
    y = (x - mean) @ pca @ within
    means = np.stack([y[track == t].mean(0) for t in range(300)])
    deviations = y - means[track]
    np.testing.assert_allclose(deviations.T @ deviations / len(y), np.eye(6), atol=1e-6)

    # Unseen tracks: first half of each finds its second half far more often after the step.
    x, track = _tracks(100, 16, seed=1)

    def halves(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = (x - mean) @ m
        first = np.stack([rows[track == t][:8].mean(0) for t in range(100)])
        second = np.stack([rows[track == t][8:].mean(0) for t in range(100)])
        return first, second

    # (About 0.37 and 0.77 over seeds: cosine on 3 identity directions caps it below 1.)
    assert identification_accuracy(*halves(pca)) < 0.5
    assert identification_accuracy(*halves(pca @ within)) > 0.65

    # Single-excerpt tracks carry no spread; with no other track there is nothing to measure.
    with pytest.raises(ValueError, match="at least 2 excerpts"):
        within_track_whitening(x[:5], np.arange(5), 1.0, 0.01)
    with pytest.raises(ValueError, match="track indices"):
        within_track_whitening(x[:5], np.arange(4), 1.0, 0.01)


def test_whiten_a_finetuned_run_then_refit_and_export(music, tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # small batches trip collapse checks
        run = finetune(_finetune_config(music, tmp_path / "ft", steps=2, batch_size=8, ratio=1.0))
    before, _, before_state = ckpt.load_model(run)
    assert not before.whitened

    settings = {"checkpoint": str(run), "device": "cpu", "progress": False, "alpha": 1.0}
    out = fit_whitening(load_config(WhitenConfig, None, {**settings, "excerpts": 2}))
    assert out == run / "whiten"
    summary = json.loads((out / "whitening.json").read_text("utf-8"))
    assert summary["alpha"] == 1.0 and summary["excerpts_per_track"] == 2
    assert summary["within_alpha"] == 1.0 and summary["harmony_weight"] == 0.2  # defaults
    assert summary["rhythm_weight"] == 0.1
    assert 0 < summary["excerpts"] <= 2 * summary["tracks"]

    after, config, state = ckpt.load_model(out)
    assert after.whitened and config.whitened and config.harmony_weight == 0.2
    assert config.rhythm_weight == 0.1
    weights = after.state_dict()
    for name, p in before.state_dict().items():
        assert torch.equal(p, weights[name]), name  # encoder and tag head untouched
    # Profile statistics of real excerpts: every class holds some energy, and it varies; the
    # onset autocorrelation lies in [-1, 1] and varies too.
    assert float(after.harmony_mean.min()) > 0 and float(after.harmony_scale.min()) > 1e-6
    assert float(after.rhythm_mean.abs().max()) <= 1 and float(after.rhythm_scale.max()) > 1e-3
    dim = after.embedding_dim
    h = torch.randn(4, dim)
    d = torch.cat([h, torch.rand(4, 12), torch.rand(4, 63)], dim=1)
    z = F.normalize((h - after.whiten_mean) @ after.whiten_matrix, dim=-1)
    profile = F.normalize((d[:, dim : dim + 12] - after.harmony_mean) / after.harmony_scale, dim=-1)
    rhythm = F.normalize((d[:, dim + 12 :] - after.rhythm_mean) / after.rhythm_scale, dim=-1)
    expected = torch.cat([z, 0.2**0.5 * profile, 0.1**0.5 * rhythm], dim=1) / 1.3**0.5
    torch.testing.assert_close(after.similarity(d), expected)
    assert not torch.allclose(after.similarity(d)[:, :dim], before.similarity(h), atol=1e-3)
    torch.testing.assert_close(after.tag_probs(h), before.tag_probs(h))
    assert state["config"]["data"] == before_state["config"]["data"]

    # refit-head after whiten keeps the whitening and both records reach the bundle.
    refit = refit_head(
        load_config(
            RefitConfig,
            None,
            {"checkpoint": str(out), "device": "cpu", "progress": False, "weight_decays": [1e-4]},
        )
    )
    refitted, _, _ = ckpt.load_model(refit)
    torch.testing.assert_close(refitted.whiten_matrix, after.whiten_matrix)
    result = export(load_config(ExportConfig, None, {"checkpoint": str(refit), "device": "cpu"}))
    bundle = load_bundle(result.path)
    assert bundle.config.whitened
    assert bundle.config.provenance["whitening"]["alpha"] == 1.0
    assert "head_refit" in bundle.config.provenance
    torch.testing.assert_close(bundle.model.similarity(d), refitted.similarity(d))

    # Fine-tuning from a whitened bundle starts unwhitened and without the profile: the
    # statistics belong to the old encoder, so they are refitted after training.
    again = finetune(
        _finetune_config(
            music, tmp_path / "again", steps=1, batch_size=8, ratio=1.0, init=str(result.path)
        )
    )
    assert bundle.config.harmony_weight == 0.2
    restarted = ckpt.load_model(again)[0]
    assert not restarted.whitened and not restarted.statistics

    capsys.readouterr()
    assert main(["whiten", str(run), "--out", str(tmp_path / "cli"), "--device", "cpu",
                 "--no-progress", "--excerpts", "1", "--eps", "0.01", "--within-alpha", "0",
                 "--harmony-weight", "0", "--rhythm-weight", "0"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert (
        "eps 0.01, within-track alpha 0, eps 0.001, harmony weight 0, rhythm weight 0:" in printed
    )
    plain, plain_config, _ = ckpt.load_model(tmp_path / "cli")
    assert plain_config.harmony_weight == 0 and plain.descriptor_dim == plain.embedding_dim
    # Whitening a run that has statistics again replaces (here: drops one of) its fitted buffers.
    assert main(["whiten", str(out), "--out", str(tmp_path / "re"), "--device", "cpu",
                 "--no-progress", "--excerpts", "2", "--harmony-weight", "0"]) == 0  # fmt: skip
    rewhitened = ckpt.load_model(tmp_path / "re")[0].state_dict()
    assert "harmony_mean" not in rewhitened and "rhythm_mean" in rewhitened
    assert main(["whiten", str(run), "--out", str(tmp_path / "x"), "--excerpts", "1"]) == 2
    assert main(["whiten", str(result.path), "--out", str(tmp_path / "x")]) == 2  # a bundle
    assert main(["whiten", str(run), "--out", str(tmp_path / "x"), "--alpha", "0"]) == 2
    assert main(["whiten", str(run), "--out", str(tmp_path / "x"), "--harmony-weight", "-1"]) == 2
    assert main(["whiten", str(run), "--out", str(tmp_path / "x"), "--rhythm-weight", "-1"]) == 2
