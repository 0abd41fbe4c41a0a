"""Training objectives: what the encoder is asked to do with a batch of views.

An objective owns the heads it needs (projection MLP, predictor, prototypes, a BYOL target
network) on top of the shared `EmbeddingModel`, and turns a batch of already-augmented views
into a loss plus metrics. The training loop stays the same for all of them:

    objective = build_objective("byol", model, **hparams)
    optimizer = torch.optim.AdamW(objective.online_parameters(), ...)
    for step in range(total_steps):
        loss, metrics = objective(batch, step, total_steps)   # batch["x1"], batch["x2"] augmented
        loss.backward(); optimizer.step(); optimizer.zero_grad()
        objective.after_step(step, total_steps)               # BYOL's EMA, SwAV's prototypes

`views` tells the loop which dataset feeds it: "two_view" (`TwoViewDataset`: two crops of one
track) or "pairs" (`PairDataset`: a track and a playlist/album partner). Every objective reports
`collapse_metrics` of the served embedding z = normalize(h) and "collapsed" (0/1) in its
metrics, so a silently collapsed run is visible in the log.

The base class and shared heads live here; each objective has its own module, imported at the
bottom of this file to fill the registry.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from musicssl.engine.embedding_model import EmbeddingModel, normalize
from torch import Tensor, nn

from ..collapse import collapse_metrics, is_collapsed

__all__ = ["OBJECTIVES", "Objective", "build_objective", "mlp_head"]


def mlp_head(in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = True) -> nn.Sequential:
    """SimCLR's projection head: Linear -> BatchNorm -> ReLU -> Linear (2 layers).

    SimCLR (Chen et al. 2020) showed a non-linear head before the loss improves the
    representation underneath it: the head absorbs the invariances the loss forces, so h keeps
    information (e.g. pitch, loudness) that downstream tasks need.
    """
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(hidden_dim))
    layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
    return nn.Sequential(*layers)


class Objective(nn.Module):
    """Base class: holds the model, the resolved hyper-parameters and shared helpers."""

    name: str = ""
    views: str = "two_view"

    def __init__(self, model: EmbeddingModel, **hparams: object) -> None:
        super().__init__()
        self.model = model
        # Resolved hyper-parameters, JSON-able, for checkpoints and bundle provenance.
        self.hparams: dict[str, object] = dict(hparams)

    @property
    def embedding_dim(self) -> int:
        return int(self.model.embedding_dim)

    def encode_views(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """h1, h2 for the batch's two views, through one encoder call.

        One call on the concatenated views: BatchNorm sees both views' statistics (as in
        SimCLR's global BN), and one large batch uses the CPU better than two halves.
        """
        x1, x2 = batch["x1"], batch["x2"]
        h = self.model.encode(torch.cat([x1, x2]))
        return h[: x1.shape[0]], h[x1.shape[0] :]

    def embedding_metrics(self, h: Tensor, assignments: Tensor | None = None) -> dict[str, float]:
        """Collapse statistics of the served embedding z = normalize(h), plus "collapsed"."""
        metrics = collapse_metrics(normalize(h.detach()), assignments)
        metrics["collapsed"] = float(is_collapsed(metrics))
        return metrics

    def forward(
        self, batch: dict[str, Tensor], step: int, total_steps: int
    ) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after each optimizer step (step = index of the step just taken, from 0)."""

    def online_parameters(self) -> Iterable[nn.Parameter]:
        """The parameters the optimizer updates (frozen/EMA ones excluded)."""
        return [p for p in self.parameters() if p.requires_grad]


OBJECTIVES: dict[str, type[Objective]] = {}


def build_objective(name: str, model: EmbeddingModel, **hparams: object) -> Objective:
    """Instantiate a registered objective; unknown names and hyper-parameters raise."""
    try:
        cls = OBJECTIVES[name]
    except KeyError:
        known = ", ".join(sorted(OBJECTIVES))
        raise ValueError(f"unknown objective {name!r} (known: {known})") from None
    try:
        return cls(model, **hparams)
    except TypeError as exc:
        raise ValueError(f"objective {name!r}: {exc}") from None


# The objective modules import the base class above, so they are imported after it.
from .barlow import BarlowTwins  # noqa: E402
from .byol import BYOL  # noqa: E402
from .clustering import SwAV  # noqa: E402
from .contrastive import Contrastive  # noqa: E402
from .playlist import PlaylistPairs  # noqa: E402
from .vicreg import VICReg  # noqa: E402

for _cls in (Contrastive, BYOL, SwAV, BarlowTwins, VICReg, PlaylistPairs):
    OBJECTIVES[_cls.name] = _cls

__all__ += ["BYOL", "BarlowTwins", "Contrastive", "PlaylistPairs", "SwAV", "VICReg"]
