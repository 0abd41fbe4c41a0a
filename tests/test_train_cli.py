"""`musicssl-train` end to end through `main([...])`: one TOML file serves every command."""

from __future__ import annotations

import json
import warnings

import pytest
from musicssl.engine import models
from musicssl.training import checkpoint as ckpt
from musicssl.training.cli import main
from test_pretrain import corpus, one_thread  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    return corpus(tmp_path_factory)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _toml(music, path):
    path.write_text(
        f"""
device = "cpu"
progress = false

[model]
sample_rate = 8000
embedding_dim = 16
excerpt_samples = 8000
arch_params = {{channels = [8, 16, 32], n_mels = 32, n_fft = 256, hop_length = 128}}

[data]
folder = "{music / "music"}"
cache_dir = "{music / "cache"}"
split = [0.5, 0.2, 0.3]

[pretrain]
objective = "contrastive"
objective_params = {{projection_dim = 16}}
steps = 4
batch_size = 8
log_every = 1

[finetune]
ssl_params = {{projection_dim = 16}}
steps = 6
batch_size = 8
eval_every = 3

[measure-ratio]
ssl_params = {{projection_dim = 16}}
ratio_steps = 3
batch_size = 8

[evaluate]
probes = ["linear"]
fractions = [0.5, 1.0]
probe_epochs = 50
""",
        encoding="utf-8",
    )
    return path


def test_cli_pretrain_resume_ratio_finetune_evaluate_export(music, tmp_path, capsys):
    config = str(_toml(music, tmp_path / "train.toml"))
    pre, ft, ev = tmp_path / "pre", tmp_path / "ft", tmp_path / "eval"

    assert main(["pretrain", "--config", config, "--out", str(pre), "--stop-after", "2"]) == 0
    assert ckpt.load_checkpoint(ckpt.latest_checkpoint(pre))["step"] == 2
    # --resume needs only the run folder: the recorded config.toml supplies the rest
    assert main(["pretrain", "--out", str(pre), "--resume"]) == 0
    assert ckpt.load_checkpoint(ckpt.latest_checkpoint(pre))["step"] == 4

    init = ["--config", config, "--out", str(ft), "--init", str(pre)]
    assert main(["measure-ratio", *init]) == 0
    ratio = json.loads((ft / "ratio.json").read_text())["ratio"]
    assert ratio > 0
    assert main(["finetune", *init, "--alpha", "0.5", "--lr", "0.002"]) == 0
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(ft))
    assert state["lambda"] == pytest.approx(0.5 / ratio)
    assert state["config"]["init"] == str(pre) and state["config"]["optim"]["lr"] == 0.002
    # Fine-tuning may hear longer crops than pre-training did (the encoders are convolutional).
    longer = 2 * state["bundle_config"]["excerpt_samples"]
    long_run = ["--config", config, "--out", str(tmp_path / "ft-long"), "--init", str(pre)]
    extra = ["--ratio", "1", "--steps", "1", "--set", f"model.excerpt_samples={longer}"]
    assert main(["finetune", *long_run, *extra]) == 0
    long_state = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "ft-long"))
    assert long_state["bundle_config"]["excerpt_samples"] == longer

    args = ["evaluate", "--config", config, "--checkpoint", str(ft), "--out", str(ev)]
    assert main([*args, "--baselines", "mfcc"]) == 0
    results = json.loads((ev / "results.json").read_text())
    assert set(results["features"]) == {"model", "mfcc"}
    assert set(results["features"]["model"]["tagging"]) == {"linear", "head"}
    model = results["features"]["model"]
    assert 0 <= model["retrieval"]["M@10"] <= 1 and model["retrieval"]["queries"] == 12
    assert 0 <= model["identification"] <= 1 and model["identification_tracks"] == 12
    mfcc = results["features"]["mfcc"]  # the hand-crafted baseline is scored on it too
    assert 0 <= mfcc["identification"] <= 1 and mfcc["identification_tracks"] == 12
    assert "| model | linear |" in capsys.readouterr().out

    assert main(["export", str(ft), "--install", "--name", "my tagger"]) == 0
    installed = [b for b in models.list_bundles() if b.name == "my tagger"]
    assert len(installed) == 1 and installed[0].trained and installed[0].n_tags == 2
    assert (ft / "bundle" / "config.json").is_file()


def test_cli_reports_bad_settings_and_missing_inputs(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["pretrain", "--out", out, "--set", "stpes=3"]) == 2
    assert "stpes" in capsys.readouterr().err
    assert main(["pretrain", "--out", out, "--device", "cpu"]) == 2  # no data given
    assert "--data" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing")]) == 1
    assert "no such" in capsys.readouterr().err
    assert main(["finetune", "--config", str(tmp_path / "missing.toml")]) == 2
