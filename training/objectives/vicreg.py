"""VICReg (Bardes, Ponce & LeCun 2022): invariance + variance hinge + covariance penalty.

Weights 25/25/1 and target std 1 are the paper's, exposed. The variance term is the explicit
anti-collapse force, so its value is logged next to the collapse metrics. Projector: the
2-layer SimCLR-style head, 2048 wide (the paper's 3 x 8192 would outweigh the CPU encoder).
"""

from __future__ import annotations

import torch
from musicssl.engine.embedding_model import EmbeddingModel
from torch import Tensor

from ..losses import vicreg_terms
from . import Objective, mlp_head


class VICReg(Objective):
    name = "vicreg"
    views = "two_view"

    def __init__(
        self,
        model: EmbeddingModel,
        *,
        inv: float = 25.0,
        var: float = 25.0,
        cov: float = 1.0,
        gamma: float = 1.0,
        projection_dim: int = 2048,
        hidden_dim: int = 2048,
    ) -> None:
        super().__init__(
            model,
            inv=inv,
            var=var,
            cov=cov,
            gamma=gamma,
            projection_dim=projection_dim,
            hidden_dim=hidden_dim,
        )
        self.weights = (float(inv), float(var), float(cov))
        self.gamma = float(gamma)
        self.projector = mlp_head(model.embedding_dim, int(hidden_dim), int(projection_dim))

    def forward(
        self, batch: dict[str, Tensor], step: int, total_steps: int
    ) -> tuple[Tensor, dict[str, float]]:
        h1, h2 = self.encode_views(batch)
        z1, z2 = self.projector(torch.cat([h1, h2])).chunk(2)
        terms = vicreg_terms(z1, z2, self.gamma)
        inv, var, cov = self.weights
        loss = inv * terms["invariance"] + var * terms["variance"] + cov * terms["covariance"]
        metrics = {
            "loss": float(loss.detach()),
            **{name: float(value.detach()) for name, value in terms.items()},
            **self.embedding_metrics(torch.cat([h1, h2])),
        }
        return loss, metrics
