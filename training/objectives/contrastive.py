"""SimCLR/CLMR: two crops of one track are positives, every other view in the batch a negative.

CLMR (Spijkervet & Burgoyne 2021) trains SampleCNN this way with NT-Xent at temperature 0.5 and
a 2-layer projection head; Deezer's multi-view framework uses 0.1. DESIGN.md's CPU probe found
that this learns track identity (excerpt -> track identification rose from 0.66 to 0.82) more
than style, which is why the playlist/album objective exists alongside it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from musicssl.engine.embedding_model import EmbeddingModel
from torch import Tensor

from ..losses import nt_xent
from . import Objective, mlp_head


class Contrastive(Objective):
    name = "contrastive"
    views = "two_view"

    def __init__(
        self,
        model: EmbeddingModel,
        *,
        temperature: float = 0.5,
        projection_dim: int = 128,
        hidden_dim: int | None = None,
    ) -> None:
        hidden_dim = int(hidden_dim or model.embedding_dim)
        super().__init__(
            model, temperature=temperature, projection_dim=projection_dim, hidden_dim=hidden_dim
        )
        self.temperature = float(temperature)
        self.projector = mlp_head(model.embedding_dim, hidden_dim, int(projection_dim))

    def forward(
        self, batch: dict[str, Tensor], step: int, total_steps: int
    ) -> tuple[Tensor, dict[str, float]]:
        h1, h2 = self.encode_views(batch)
        z = self.projector(torch.cat([h1, h2]))
        z1, z2 = z.chunk(2)
        loss = nt_xent(z1, z2, self.temperature)
        with torch.no_grad():
            n1, n2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
            sims = n1 @ n2.T
            # How often a view's nearest other-view is its own partner: the task's accuracy.
            accuracy = (sims.argmax(dim=1) == torch.arange(len(sims), device=sims.device)).float()
        metrics = {
            "loss": float(loss.detach()),
            "positive_cosine": float(sims.diagonal().mean()),
            "pair_accuracy": float(accuracy.mean()),
            **self.embedding_metrics(torch.cat([h1, h2])),
        }
        return loss, metrics
