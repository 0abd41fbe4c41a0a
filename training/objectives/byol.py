"""BYOL (Grill et al. 2020): predict a slow-moving target network's projection of the other view.

No negatives: collapse is avoided only by the predictor and the EMA target, so the collapse
metrics matter here. Defaults are the paper's: projector and predictor MLPs 4096 -> 256, target
momentum 0.996 rising to 1 on a cosine schedule, symmetric loss (both views predict each other).
The loss is normalised MSE summed over features and averaged over the batch (see
`losses.byol_loss` for the batch-sum bug DESIGN.md warns about).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable

import torch
from musicssl.engine.embedding_model import EmbeddingModel
from torch import Tensor, nn

from ..losses import byol_loss
from . import Objective, mlp_head


def target_momentum(step: int, total_steps: int, base: float = 0.996) -> float:
    """tau = 1 - (1 - base) (cos(pi k / K) + 1) / 2: base at the start, 1 at the end."""
    k = min(max(step, 0), max(total_steps, 1))
    return 1.0 - (1.0 - base) * (math.cos(math.pi * k / max(total_steps, 1)) + 1.0) / 2.0


class BYOL(Objective):
    name = "byol"
    views = "two_view"

    def __init__(
        self,
        model: EmbeddingModel,
        *,
        projection_dim: int = 256,
        hidden_dim: int = 4096,
        momentum: float = 0.996,
    ) -> None:
        super().__init__(
            model, projection_dim=projection_dim, hidden_dim=hidden_dim, momentum=momentum
        )
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.base_momentum = float(momentum)
        self.momentum = float(momentum)
        self.projector = mlp_head(model.embedding_dim, int(hidden_dim), int(projection_dim))
        self.predictor = mlp_head(int(projection_dim), int(hidden_dim), int(projection_dim))
        # The target starts as a copy of the online network and only moves by EMA.
        self.target_model = copy.deepcopy(model)
        self.target_projector = copy.deepcopy(self.projector)
        for p in self._target_parameters():
            p.requires_grad_(False)

    def _target_parameters(self) -> Iterable[nn.Parameter]:
        yield from self.target_model.parameters()
        yield from self.target_projector.parameters()

    def online_parameters(self) -> list[nn.Parameter]:
        return [
            *self.model.parameters(),
            *self.projector.parameters(),
            *self.predictor.parameters(),
        ]

    def forward(
        self, batch: dict[str, Tensor], step: int, total_steps: int
    ) -> tuple[Tensor, dict[str, float]]:
        h1, h2 = self.encode_views(batch)
        p1, p2 = self.predictor(self.projector(torch.cat([h1, h2]))).chunk(2)
        with torch.no_grad():
            x = torch.cat([batch["x1"], batch["x2"]])
            t1, t2 = self.target_projector(self.target_model.encode(x)).chunk(2)
        # Symmetric, as in the paper: each view predicts the other's target projection.
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        metrics = {
            "loss": float(loss.detach()),
            "momentum": self.momentum,
            **self.embedding_metrics(torch.cat([h1, h2])),
        }
        return loss, metrics

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """EMA of the online weights into the target; BatchNorm statistics are copied."""
        tau = target_momentum(step + 1, total_steps, self.base_momentum)
        self.momentum = tau
        pairs = (
            (self.model, self.target_model),
            (self.projector, self.target_projector),
        )
        for online, target in pairs:
            for p_o, p_t in zip(online.parameters(), target.parameters(), strict=True):
                p_t.mul_(tau).add_(p_o.detach(), alpha=1.0 - tau)
            for b_o, b_t in zip(online.buffers(), target.buffers(), strict=True):
                b_t.copy_(b_o)
