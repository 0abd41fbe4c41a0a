"""soup: the weights of fine-tuning runs averaged into one network that the later steps read."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from musicssl.engine.bundle import load_bundle
from musicssl.training import checkpoint as ckpt
from musicssl.training.cli import main
from musicssl.training.config import ConfigError, ExportConfig, RefitConfig, load_config
from musicssl.training.export import export
from musicssl.training.finetune import finetune
from musicssl.training.head_refit import refit_head
from musicssl.training.soup import average_states, soup
from test_finetune import _finetune_config
from test_pretrain import corpus, one_thread  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short fine-tuning runs of one start that differ only in their seed."""
    music = corpus(tmp_path_factory)
    out = tmp_path_factory.mktemp("soup-runs")
    folders = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # small batches trip collapse checks
        for seed in (0, 1):
            config = _finetune_config(
                music, out / f"ft{seed}", steps=4, batch_size=8, eval_every=2, ratio=1.0, seed=seed
            )
            folders.append(finetune(config))
    return folders


def test_average_states_means_floats_and_keeps_counters():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)}
    mean = average_states([a, b])
    assert mean["w"].tolist() == [2.0, 4.0] and mean["w"].dtype == torch.float32
    assert int(mean["n"]) == 3


def test_soup_averages_the_members_and_exports_with_its_record(runs, tmp_path, capsys):
    members = [ckpt.load_model(run) for run in runs]
    assert not torch.equal(members[0][0].encoder.proj.weight, members[1][0].encoder.proj.weight), (
        "the seeds must give different runs, or the average proves nothing"
    )

    assert main(["soup", *map(str, runs), "--out", str(tmp_path / "soup")]) == 0
    assert "averaged 2 runs" in capsys.readouterr().out
    model, _, state = ckpt.load_model(tmp_path / "soup")
    for name, value in model.state_dict().items():
        a, b = (m[0].state_dict()[name] for m in members)
        if value.is_floating_point():
            torch.testing.assert_close(value, (a + b) / 2, msg=name)
    record = json.loads((tmp_path / "soup" / "soup.json").read_text("utf-8"))
    assert [m["seed"] for m in record["members"]] == [0, 1]
    assert all("metrics" in m and "step" in m for m in record["members"])
    assert "metrics" not in state and "step" not in state  # no member speaks for the soup
    assert state["config"]["data"] == members[0][2]["config"]["data"]

    # The later steps read the soup like any run and carry its record to the bundle.
    refit = refit_head(
        load_config(RefitConfig, None, {"checkpoint": str(tmp_path / "soup"), "device": "cpu"})
    )
    result = export(load_config(ExportConfig, None, {"checkpoint": str(refit), "device": "cpu"}))
    provenance = load_bundle(result.path).config.provenance
    assert provenance["soup"]["members"][1]["seed"] == 1
    assert provenance["stage"] == "finetune" and provenance["steps"] is None


def test_soup_refuses_runs_that_cannot_be_averaged(runs, tmp_path):
    with pytest.raises(ConfigError, match="at least two"):
        soup(runs[:1], tmp_path / "one")
    other = ckpt.load_checkpoint(ckpt.resolve_checkpoint(runs[1]))
    other["config"]["init"] = "/elsewhere/pre"
    ckpt.save_checkpoint(tmp_path / "other.pt", other)
    with pytest.raises(ConfigError, match="pre-trained starts"):
        soup([runs[0], tmp_path / "other.pt"], tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()  # nothing written for a refused soup
    assert main(["soup", str(runs[0]), str(tmp_path / "other.pt"), "--out", "x"]) == 2
