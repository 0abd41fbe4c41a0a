"""Clustering by swapped assignment to prototypes (SwAV, Caron et al. 2020).

Why SwAV rather than a DINO-style teacher: it needs no second network (half the memory and
compute of BYOL/DINO on a CPU), and its Sinkhorn equipartition constraint is an explicit guard
against the collapse both methods risk. Defaults follow the paper (temperature 0.1, epsilon
0.05, 3 Sinkhorn iterations, prototypes L2-normalised after every step, frozen for the first
steps) scaled to small CPU batches: 64 prototypes and a queue of recent projections so the
Sinkhorn balance is computed over ~10 batches rather than 48 samples (SwAV adds a queue for
batches below 256 for the same reason).

The projector reads the served embedding z = normalize(h) rather than h, so clusters live in
the space the engine indexes and `assignments(z)` can label any batch of served embeddings (the
training loop's periodic collapse check calls it).

Collapse monitoring uses the prototype scores' own argmax (the network's assignment), not the
Sinkhorn codes, which are balanced by construction: "cluster_entropy" near 0 means one prototype
wins for every input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from musicssl.engine.embedding_model import EmbeddingModel, normalize
from torch import Tensor, nn

from ..losses import sinkhorn, swapped_prediction
from . import Objective, mlp_head


class SwAV(Objective):
    name = "clustering"
    views = "two_view"

    def __init__(
        self,
        model: EmbeddingModel,
        *,
        n_prototypes: int = 64,
        projection_dim: int = 128,
        hidden_dim: int | None = None,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iters: int = 3,
        queue_size: int = 480,
        freeze_prototypes_steps: int = 100,
    ) -> None:
        hidden_dim = int(hidden_dim or model.embedding_dim)
        super().__init__(
            model,
            n_prototypes=n_prototypes,
            projection_dim=projection_dim,
            hidden_dim=hidden_dim,
            temperature=temperature,
            epsilon=epsilon,
            sinkhorn_iters=sinkhorn_iters,
            queue_size=queue_size,
            freeze_prototypes_steps=freeze_prototypes_steps,
        )
        self.temperature = float(temperature)
        self.epsilon = float(epsilon)
        self.sinkhorn_iters = int(sinkhorn_iters)
        self.freeze_prototypes_steps = int(freeze_prototypes_steps)
        self.projector = mlp_head(model.embedding_dim, hidden_dim, int(projection_dim))
        self.prototypes = nn.Linear(int(projection_dim), int(n_prototypes), bias=False)
        self._normalize_prototypes()
        # One queue per view of past (detached, normalised) projections; used once full.
        self.register_buffer("queue", torch.zeros(2, int(queue_size), int(projection_dim)))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _normalize_prototypes(self) -> None:
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def _codes(self, scores: Tensor, view: int) -> Tensor:
        size = self.queue.shape[1]
        if size and int(self.queue_filled) >= size:
            with torch.no_grad():
                past = self.queue[view] @ self.prototypes.weight.T
            codes = sinkhorn(torch.cat([past, scores.detach()]), self.epsilon, self.sinkhorn_iters)
            return codes[size:]
        return sinkhorn(scores.detach(), self.epsilon, self.sinkhorn_iters)

    @torch.no_grad()
    def _enqueue(self, z1: Tensor, z2: Tensor) -> None:
        size = self.queue.shape[1]
        if not size:
            return
        new = torch.stack([z1, z2]).detach()[:, :size]
        b = new.shape[1]
        if b < size:
            self.queue[:, b:] = self.queue[:, :-b].clone()
        self.queue[:, :b] = new
        self.queue_filled.add_(b).clamp_(max=size)

    def forward(
        self, batch: dict[str, Tensor], step: int, total_steps: int
    ) -> tuple[Tensor, dict[str, float]]:
        h1, h2 = self.encode_views(batch)
        z = F.normalize(self.projector(normalize(torch.cat([h1, h2]))), dim=1)
        weight = self.prototypes.weight
        if step < self.freeze_prototypes_steps:
            # SwAV freezes the prototypes at first: random prototypes chasing a random
            # encoder is an easy way to put everything in one cluster.
            weight = weight.detach()
        scores = z @ weight.T
        s1, s2 = scores.chunk(2)
        q1, q2 = self._codes(s1, 0), self._codes(s2, 1)
        loss = swapped_prediction(s1, s2, q1, q2, self.temperature)
        z1, z2 = z.chunk(2)
        self._enqueue(z1, z2)
        metrics = {
            "loss": float(loss.detach()),
            **self.embedding_metrics(torch.cat([h1, h2]), assignments=scores.detach()),
        }
        return loss, metrics

    @torch.no_grad()
    def assignments(self, z: Tensor) -> Tensor:
        """Prototype scores (B, K) of served embeddings z, for `collapse_metrics`.

        The projector runs in eval mode (running BatchNorm statistics), so checking does not
        disturb training statistics.
        """
        was_training = self.projector.training
        self.projector.eval()
        try:
            projected = F.normalize(self.projector(z), dim=1)
        finally:
            self.projector.train(was_training)
        return projected @ self.prototypes.weight.T

    def after_step(self, step: int, total_steps: int) -> None:
        """Back onto the unit sphere after the optimizer moved them (SwAV does this each step)."""
        self._normalize_prototypes()
