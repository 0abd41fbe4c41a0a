"""Barlow Twins (Zbontar et al. 2021): make the views' cross-correlation matrix the identity.

The off-diagonal weight lambda = 5e-3 is the paper's (exposed: it was tuned for 8192-d
projections). The projector is the 2-layer SimCLR-style head, 2048 wide by default: the paper's
3 x 8192 head would cost more than the CPU encoder itself. The paper found accuracy keeps
rising with the projector's width, so raise `projection_dim` where compute allows.
"""

from __future__ import annotations

import torch
from musicssl.engine.embedding_model import EmbeddingModel
from torch import Tensor

from ..losses import barlow_twins
from . import Objective, mlp_head


class BarlowTwins(Objective):
    name = "barlow"
    views = "two_view"

    def __init__(
        self,
        model: EmbeddingModel,
        *,
        off_diagonal_weight: float = 5e-3,
        projection_dim: int = 2048,
        hidden_dim: int = 2048,
    ) -> None:
        super().__init__(
            model,
            off_diagonal_weight=off_diagonal_weight,
            projection_dim=projection_dim,
            hidden_dim=hidden_dim,
        )
        self.off_diagonal_weight = float(off_diagonal_weight)
        self.projector = mlp_head(model.embedding_dim, int(hidden_dim), int(projection_dim))

    def forward(
        self, batch: dict[str, Tensor], step: int, total_steps: int
    ) -> tuple[Tensor, dict[str, float]]:
        h1, h2 = self.encode_views(batch)
        z1, z2 = self.projector(torch.cat([h1, h2])).chunk(2)
        loss = barlow_twins(z1, z2, self.off_diagonal_weight)
        metrics = {"loss": float(loss.detach()), **self.embedding_metrics(torch.cat([h1, h2]))}
        return loss, metrics
