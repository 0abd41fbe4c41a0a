"""Two CPU processes with gloo: DDP keeps ranks in step, NT-Xent sees every rank's negatives."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from musicssl.training import checkpoint as ckpt
from musicssl.training import distributed
from musicssl.training.config import PretrainConfig, load_config
from musicssl.training.losses import nt_xent
from musicssl.training.pretrain import Pretrainer
from test_pretrain import OBJECTIVE_PARAMS, TINY, corpus, data_overrides

WORLD = 2


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    return corpus(tmp_path_factory)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _views(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + rank)
    return torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)


def _worker(rank: int, port: int, out: str, overrides: dict) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    run = Pretrainer(load_config(PretrainConfig, None, overrides))
    run.setup()
    assert run.ctx.world_size == WORLD and run.ctx.backend == "gloo"
    run.train()
    params = {k: v.detach().clone() for k, v in run.model.named_parameters()}

    # Gathered NT-Xent: the loss of the global batch, and gradients that reach this rank.
    views = [_views(r) for r in range(WORLD)]
    z1, z2 = (v.clone().requires_grad_(True) for v in views[rank])
    with distributed.global_negatives(run.ctx):
        from musicssl.training.objectives import contrastive

        loss = contrastive.nt_xent(z1, z2, 0.5)
    loss.backward()
    full1 = torch.cat([v[0] for v in views]).requires_grad_(True)
    full2 = torch.cat([v[1] for v in views]).requires_grad_(True)
    expected = nt_xent(full1, full2, 0.5)
    expected.backward()
    rows = slice(3 * rank, 3 * rank + 3)
    torch.save(
        {
            "params": params,
            "loss": loss.detach(),
            "expected": expected.detach(),
            # every rank computes the global loss; all_gather's backward sums their gradients
            "grad": z1.grad,
            "expected_grad": WORLD * full1.grad[rows],
            "restored": contrastive.nt_xent is nt_xent,
        },
        Path(out) / f"rank{rank}.pt",
    )
    distributed.shutdown(run.ctx)


def test_two_gloo_processes_agree_on_parameters(music, tmp_path):
    overrides = {
        **TINY,
        **data_overrides(music),
        "out": str(tmp_path / "run"),
        "objective": "contrastive",
        "objective_params": OBJECTIVE_PARAMS["contrastive"],
        "steps": 2,
        "batch_size": 4,
        "log_every": 1,
        "collapse_every": 0,
    }
    mp.spawn(_worker, args=(_free_port(), str(tmp_path), overrides), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for name, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][name]), f"ranks disagree on {name}"
    for r in ranks:
        assert torch.allclose(r["loss"], r["expected"], atol=1e-6)
        assert torch.allclose(r["grad"], r["expected_grad"], atol=1e-6)
        assert r["restored"]
    # rank 0 alone wrote the checkpoint, and it holds the shared weights
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "run"))
    assert state["world_size"] == WORLD and len(state["rng"]) == WORLD
    for name, value in ranks[0]["params"].items():
        assert torch.equal(state["model"][name], value)


def test_torchrun_runs_the_cli(music, tmp_path):
    """The documented scale-out command, as a user would type it (2 CPU processes)."""
    out = tmp_path / "run"
    arch = "{channels = [8, 16, 32], n_mels = 32, n_fft = 256, hop_length = 128}"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
        "--master_port", str(_free_port()),
        "-m", "musicssl.training.cli", "pretrain",
        "--data", str(music / "music"), "--cache", str(music / "cache"),
        "--out", str(out), "--device", "cpu", "--threads", "1", "--no-progress",
        "--steps", "2", "--batch-size", "4",
        "--set", "model.sample_rate=8000", "--set", "model.embedding_dim=16",
        "--set", "model.excerpt_samples=8000", "--set", f"model.arch_params={arch}",
        "--set", "objective_params={projection_dim = 16}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(out))
    assert state["step"] == 2 and state["world_size"] == WORLD
    assert (out / "log.csv").read_text().count("\n") == 2  # header + one row, from rank 0 only
