"""Pre-training on real encoded audio: every objective trains and logs, resume is exact.

Also home of the small corpus the other training tests share (`corpus`): 40 three-second tracks
in 20 two-track albums, tagged "low" or "high" by the key `music_signal` picks for the seed, so
the tag is really in the audio (a pitch register) and tagging results mean something.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from audio_fixtures import write_audio
from musicssl.training import checkpoint as ckpt
from musicssl.training.config import ConfigError, PretrainConfig, load_config
from musicssl.training.logs import read_csv
from musicssl.training.objectives import OBJECTIVES
from musicssl.training.pretrain import Pretrainer, grouped_order, pretrain

# -- the shared corpus --------------------------------------------------------------------------

TINY: dict[str, object] = {
    "model.sample_rate": 8000,
    "model.arch_params": {"channels": [8, 16, 32], "n_mels": 32, "n_fft": 256, "hop_length": 128},
    "model.embedding_dim": 16,
    "model.excerpt_samples": 8000,
    "device": "cpu",
    "progress": False,
}
# Small heads so each objective runs in well under a second per step on a busy CPU.
OBJECTIVE_PARAMS: dict[str, dict[str, object]] = {
    "contrastive": {"projection_dim": 16},
    "byol": {"projection_dim": 16, "hidden_dim": 32},
    "clustering": {"n_prototypes": 8, "projection_dim": 16, "queue_size": 0},
    "barlow": {"projection_dim": 32, "hidden_dim": 32},
    "vicreg": {"projection_dim": 32, "hidden_dim": 32},
    "playlist": {"projection_dim": 16},
}
_CORPORA: dict[str, Path] = {}


def pitch_seeds(per_tag: int = 20) -> dict[str, list[int]]:
    """Seeds whose `music_signal` key is low (base note index <= 2) or high (>= 9)."""
    picks: dict[str, list[int]] = {"low": [], "high": []}
    for seed in range(1000):
        base = int(np.random.default_rng(seed).integers(0, 12))  # music_signal's first draw
        tag = "low" if base <= 2 else "high" if base >= 9 else None
        if tag and len(picks[tag]) < per_tag:
            picks[tag].append(seed)
    return picks


def corpus(tmp_path_factory) -> Path:
    """The shared corpus (written once per test session); also returns its cache folder."""
    if "pitch" not in _CORPORA:
        root = tmp_path_factory.mktemp("train-corpus")
        music = root / "music"
        music.mkdir()
        for tag, seeds in pitch_seeds().items():
            for k, seed in enumerate(seeds):
                write_audio(
                    music / f"{tag}{k:02d}.flac",
                    seconds=3.0,
                    seed=seed,
                    tags={"genre": tag, "album": f"{tag} album {k // 2}", "artist": f"{tag}s"},
                )
        (root / "cache").mkdir()
        _CORPORA["pitch"] = root
    return _CORPORA["pitch"]


def data_overrides(root: Path) -> dict[str, object]:
    return {"data.folder": str(root / "music"), "data.cache_dir": str(root / "cache")}


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> Path:
    return corpus(tmp_path_factory)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine two threads ran these tiny CNNs ~10x
    slower (DESIGN.md found the same for inference)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(music: Path, out: Path, **extra: object) -> PretrainConfig:
    overrides = {
        **TINY,
        **data_overrides(music),
        "out": str(out),
        "batch_size": 6,
        "log_every": 1,
        "collapse_every": 2,
        "checkpoint_every": 100,
        **extra,
    }
    return load_config(PretrainConfig, None, overrides)


# -- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", sorted(OBJECTIVE_PARAMS))
def test_every_objective_trains_logs_and_checkpoints(music, tmp_path, objective):
    assert objective in OBJECTIVES
    config = _config(
        music,
        tmp_path / objective,
        objective=objective,
        objective_params=OBJECTIVE_PARAMS[objective],
        steps=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 6-track batches may look collapsed
        out = pretrain(config)
    rows = read_csv(out / "log.csv")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) and r["lr"] > 0 for r in rows)
    assert "collapse/embedding_std_ratio" in rows[1]  # the loop's own check, every 2 steps
    assert (out / "curves.png").stat().st_size > 1000
    assert (out / "config.toml").is_file()
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(out))  # weights_only=True inside
    assert state["step"] == 3 and state["kind"] == "pretrain"
    model = ckpt.model_from_state(state)
    assert model.n_tags == 0 and model.embedding_dim == 16


def test_contrastive_loss_falls_without_augmentation(music, tmp_path):
    config = _config(
        music,
        tmp_path / "run",
        objective="contrastive",
        objective_params={"projection_dim": 16, "temperature": 0.5},
        steps=16,
        batch_size=8,
        collapse_every=0,
        **{"augment.enabled": False, "optim.lr": 3e-3, "optim.warmup_steps": 2},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = pretrain(config)
    losses = [r["loss"] for r in read_csv(out / "log.csv")]
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.05, losses


def test_resume_continues_exactly_like_an_uninterrupted_run(music, tmp_path):
    # 32 training tracks / batch 8 = 4 batches per epoch: stopping at step 5 is mid-epoch.
    common = {"objective": "contrastive", "steps": 6, "checkpoint_every": 3, "batch_size": 8}
    common["objective_params"] = OBJECTIVE_PARAMS["contrastive"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        straight = pretrain(_config(music, tmp_path / "straight", **common))
        pretrain(_config(music, tmp_path / "split", stop_after=5, **common))
        first = ckpt.latest_checkpoint(tmp_path / "split")
        assert ckpt.load_checkpoint(first)["step"] == 5
        resumed = pretrain(_config(music, tmp_path / "split", resume="latest", **common))
    a = ckpt.load_checkpoint(ckpt.latest_checkpoint(straight))
    b = ckpt.load_checkpoint(ckpt.latest_checkpoint(resumed))
    assert a["step"] == b["step"] == 6
    for part in ("model", "objective"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key} differs after resume"
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for k, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], b["optimizer"]["state"][k]["exp_avg"])
    log_a = read_csv(straight / "log.csv")
    log_b = read_csv(resumed / "log.csv")
    assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b]
    assert len(ckpt.list_checkpoints(straight)) == 2  # keep_checkpoints


def test_resume_refuses_changed_settings(music, tmp_path):
    common = {"steps": 2, "objective_params": OBJECTIVE_PARAMS["contrastive"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pretrain(_config(music, tmp_path / "run", stop_after=1, **common))
        with pytest.raises(ConfigError, match="optim.lr"):
            pretrain(
                _config(music, tmp_path / "run", resume="latest", **common, **{"optim.lr": 0.1})
            )
        with pytest.raises(ConfigError, match="already holds checkpoints"):
            pretrain(_config(music, tmp_path / "run", **common))  # a new run, same folder


def test_collapse_is_logged_and_warned(music, tmp_path, monkeypatch):
    from musicssl.training import collapse

    monkeypatch.setitem(collapse.THRESHOLDS, "embedding_std_ratio", 100.0)  # everything collapses
    config = _config(
        music,
        tmp_path / "run",
        steps=2,
        collapse_every=1,
        objective_params=OBJECTIVE_PARAMS["contrastive"],
    )
    with pytest.warns(RuntimeWarning, match="collapsed"):
        out = pretrain(config)
    rows = read_csv(out / "log.csv")
    assert rows[0]["collapse/collapsed"] == 1.0


def test_pretrainer_exposes_parts_and_checks_data(music, tmp_path):
    run = Pretrainer(_config(music, tmp_path / "run", steps=1))
    run.setup()
    assert run.batches.batches_per_epoch >= 1
    assert run.crop_samples == 8000 and len(run.items) >= 20
    run.run()
    with pytest.raises(ConfigError, match="no training data"):
        Pretrainer(load_config(PretrainConfig, None, {**TINY, "out": str(tmp_path / "x")})).setup()


def test_album_runs_put_album_mates_side_by_side():
    """Every index once, runs of `per_group` from one album, reproducible from the seed."""
    groups = ["a"] * 9 + ["b"] * 6 + ["c"] * 2 + [None] * 3
    order = list(np.random.default_rng(1).permutation(len(groups)))
    out = grouped_order(order, groups, 4, seed=7)
    assert sorted(out) == sorted(order)
    assert out == grouped_order(order, groups, 4, seed=7)
    runs, i = [], 0
    while i < len(out):
        run = [out[i]]
        while (
            i + len(run) < len(out) and groups[out[i + len(run)]] == groups[run[0]] and len(run) < 4
        ):
            run.append(out[i + len(run)])
        runs.append(run)
        i += len(run)
    sizes = Counter(groups[r[0]] for r in runs)
    assert sizes == {"a": 3, "b": 2, "c": 1, None: 1}  # 9 -> 4+4+1, 6 -> 4+2, 2, 3
    for group in ("a", "b"):  # inside a group the shuffled order is kept
        assert [j for j in out if groups[j] == group] == [j for j in order if groups[j] == group]
    assert grouped_order(order, groups, 0, seed=7) == order
