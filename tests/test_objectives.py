"""Objectives learn on a toy problem, report collapse, and keep their bookkeeping right."""

from __future__ import annotations

import math

import pytest
import torch
from musicssl.engine.bundle import build_model, default_config
from musicssl.engine.embedding_model import EmbeddingModel
from musicssl.training.augment import Augment
from musicssl.training.collapse import collapse_metrics, is_collapsed
from musicssl.training.objectives import OBJECTIVES, Objective, build_objective
from musicssl.training.objectives.byol import target_momentum
from torch import nn

N = 512  # samples per crop
CLASSES = 4
ITEMS = 48


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class ToyEncoder(nn.Module):
    """Log band energies of the spectrum -> small MLP: learns in a few dozen steps on a CPU."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.embedding_dim = dim
        self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.fft.rfft(x).abs()[:, :256]
        bands = spec.reshape(x.shape[0], 32, 8).mean(dim=-1)
        return self.net(torch.log1p(bands))


class ConstantEncoder(nn.Module):
    """A collapsed network: the same output whatever the input (plus a trainable no-op)."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.embedding_dim = dim
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], -1) + 0.0 * x[:, :1]


def toy_signals(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """ITEMS signals of 4 N samples in CLASSES timbre classes; returns (signals, class ids)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(4 * N) / 8000.0
    classes = torch.arange(ITEMS) % CLASSES
    rows = []
    for c in classes.tolist():
        base = 300.0 * (c + 1) * (1 + 0.05 * torch.rand(1, generator=g).item())
        row = sum(
            torch.sin(2 * math.pi * base * k * t) / k for k in range(1, 3 + c)
        ) + 0.05 * torch.randn(t.shape, generator=g)
        rows.append(row * (0.3 + 0.7 * torch.rand(1, generator=g)))
    return torch.stack(rows), classes


def crops(signals: torch.Tensor, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    starts = torch.randint(0, signals.shape[1] - N, (len(idx),), generator=g)
    out = torch.stack(
        [signals[i, s : s + N] for i, s in zip(idx.tolist(), starts.tolist(), strict=True)]
    )
    return out * (0.5 + torch.rand(len(idx), 1, generator=g))  # a light gain augmentation


def batch_for(
    objective: Objective, signals, classes, g: torch.Generator, size: int = 32
) -> dict[str, torch.Tensor]:
    idx = torch.randperm(ITEMS, generator=g)[:size]
    if objective.views == "pairs":
        # A partner from the same class (the class plays the playlist).
        partner = torch.stack(
            [
                (classes == classes[i])
                .nonzero()
                .flatten()[torch.randint(0, ITEMS // CLASSES, (1,), generator=g)][0]
                for i in idx
            ]
        )
        groups1 = torch.stack([idx, classes[idx] + 1000], dim=1)
        groups2 = torch.stack([partner, classes[partner] + 1000], dim=1)
        return {
            "x1": crops(signals, idx, g),
            "x2": crops(signals, partner, g),
            "index": idx,
            "index2": partner,
            "groups1": groups1,
            "groups2": groups2,
            "source": torch.zeros(size, dtype=torch.long),
        }
    return {"x1": crops(signals, idx, g), "x2": crops(signals, idx, g), "index": idx}


SMALL = {
    "contrastive": {"projection_dim": 16},
    "byol": {"projection_dim": 16, "hidden_dim": 64},
    "clustering": {
        "n_prototypes": 8,
        "projection_dim": 16,
        "queue_size": 0,
        "freeze_prototypes_steps": 0,
    },
    "barlow": {"projection_dim": 32, "hidden_dim": 64},
    "vicreg": {"projection_dim": 32, "hidden_dim": 64},
    "playlist": {"projection_dim": 16},
}


def train(name: str, steps: int = 40, encoder: nn.Module | None = None, seed: int = 0):
    torch.manual_seed(seed)
    model = EmbeddingModel(encoder or ToyEncoder(), 16)
    objective = build_objective(name, model, **SMALL[name])
    optimizer = torch.optim.Adam(objective.online_parameters(), lr=3e-3)
    signals, classes = toy_signals(seed)
    g = torch.Generator().manual_seed(seed)
    history = []
    for step in range(steps):
        loss, metrics = objective(batch_for(objective, signals, classes, g), step, steps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        objective.after_step(step, steps)
        history.append((float(loss.detach()), metrics))
    return objective, history


def test_registry_has_the_six_objectives_and_rejects_unknowns():
    assert set(OBJECTIVES) == {"contrastive", "byol", "clustering", "barlow", "vicreg", "playlist"}
    model = EmbeddingModel(ToyEncoder(), 16)
    with pytest.raises(ValueError, match="unknown objective"):
        build_objective("simsiam", model)
    with pytest.raises(ValueError, match="temprature"):
        build_objective("contrastive", model, temprature=0.1)
    assert build_objective("contrastive", model).hparams["temperature"] == 0.5
    assert build_objective("playlist", model).views == "pairs"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_loss_decreases_on_a_toy_problem(name):
    objective, history = train(name, steps=40)
    losses = [loss for loss, _ in history]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert math.isfinite(last) and last < first - 0.05 * abs(first), (first, last)
    metrics = history[-1][1]
    for key in ("loss", "embedding_std_ratio", "mean_cosine", "effective_rank", "collapsed"):
        assert key in metrics and isinstance(metrics[key], float)
    assert metrics["collapsed"] == 0.0
    if name == "clustering":
        assert 0.0 < metrics["cluster_entropy"] <= 1.0


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_constant_encoder_is_reported_collapsed(name):
    _, history = train(name, steps=2, encoder=ConstantEncoder())
    assert history[-1][1]["collapsed"] == 1.0


def test_collapse_metrics_thresholds():
    healthy = collapse_metrics(torch.randn(64, 32, generator=torch.Generator().manual_seed(0)))
    assert 0.8 < healthy["embedding_std_ratio"] < 1.2 and not is_collapsed(healthy)
    assert is_collapsed(collapse_metrics(torch.ones(64, 32)))
    assert is_collapsed(collapse_metrics(torch.zeros(64, 32)))
    line = torch.randn(64, 1) * torch.randn(1, 32)  # all variance along one direction
    assert is_collapsed(collapse_metrics(line))
    one_cluster = torch.zeros(64, 8)
    one_cluster[:, 3] = 1.0
    assert is_collapsed(collapse_metrics(torch.randn(64, 32), one_cluster))
    even = torch.eye(8).repeat(8, 1)
    usage = collapse_metrics(torch.randn(64, 32), even)
    assert usage["cluster_entropy"] == pytest.approx(1.0) and not is_collapsed(usage)


def test_byol_target_follows_by_ema_and_is_not_optimised():
    torch.manual_seed(0)
    model = EmbeddingModel(ToyEncoder(), 16)
    byol = build_objective("byol", model, **SMALL["byol"])
    online = {id(p) for p in byol.online_parameters()}
    assert not any(id(p) in online for p in byol.target_model.parameters())
    assert all(not p.requires_grad for p in byol.target_model.parameters())
    assert target_momentum(0, 100) == pytest.approx(0.996)
    assert target_momentum(50, 100) == pytest.approx(0.998)
    assert target_momentum(100, 100) == pytest.approx(1.0)
    w_online = byol.model.encoder.net[0].weight
    w_target = byol.target_model.encoder.net[0].weight
    with torch.no_grad():
        w_online.add_(1.0)
    before = w_target.clone()
    byol.after_step(0, 100)
    tau = target_momentum(1, 100)
    torch.testing.assert_close(w_target, tau * before + (1 - tau) * w_online)
    byol.after_step(99, 100)  # last step: momentum 1, the target stops moving
    frozen = w_target.clone()
    byol.after_step(99, 100)
    assert torch.equal(w_target, frozen)


def test_swav_keeps_unit_prototypes_and_uses_its_queue():
    torch.manual_seed(0)
    model = EmbeddingModel(ToyEncoder(), 16)
    swav = build_objective("clustering", model, n_prototypes=8, projection_dim=16, queue_size=64)
    signals, classes = toy_signals()
    g = torch.Generator().manual_seed(0)
    optimizer = torch.optim.SGD(swav.online_parameters(), lr=0.5)
    for step in range(3):
        loss, _ = swav(batch_for(swav, signals, classes, g), step, 3)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        swav.after_step(step, 3)
    norms = swav.prototypes.weight.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    assert int(swav.queue_filled) == 64 and swav.queue.abs().sum() > 0
    scores = swav.assignments(torch.randn(5, 16))
    assert scores.shape == (5, 8)


def test_playlist_positives_cover_pairs_tracks_and_groups():
    model = EmbeddingModel(ToyEncoder(), 16)
    objective = build_objective("playlist", model)
    batch = {
        "x1": torch.zeros(3, N),
        "x2": torch.zeros(3, N),
        "index": torch.tensor([0, 1, 2]),
        "index2": torch.tensor([5, 0, 6]),  # row 1's partner is track 0, also in row 0
        "groups1": torch.tensor([[0, 10], [1, -1], [2, -1]]),
        "groups2": torch.tensor([[5, 10], [0, 10], [6, -1]]),
    }
    mask = objective.positives(batch)
    expected = {(0, 3), (1, 4), (2, 5), (0, 4), (3, 4)}  # pairs, track 0 twice, group 10
    got = {(i, j) for i, j in mask.nonzero().tolist() if i < j}
    assert got == expected


@pytest.mark.parametrize("name", sorted(SMALL))
def test_objectives_train_a_real_encoder_on_augmented_views(name):
    torch.manual_seed(0)
    config = default_config(
        "tiny",
        "melcnn",
        {"channels": [4, 8], "n_mels": 16, "n_fft": 256, "hop_length": 128},
        sample_rate=8000,
        embedding_dim=16,
    )
    model = build_model(config)
    objective = build_objective(name, model, **SMALL[name])
    augment = Augment(8000)
    g = torch.Generator().manual_seed(0)
    signals, classes = toy_signals()
    batch = batch_for(objective, signals, classes, g, size=8)
    for key in ("x1", "x2"):
        batch[key] = augment(batch[key], generator=g)
    loss, metrics = objective(batch, 0, 10)
    loss.backward()
    grads = [p.grad for p in model.encoder.parameters() if p.requires_grad]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert math.isfinite(metrics["loss"])
