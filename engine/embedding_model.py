"""Encoder + similarity space + tag head, one module shared by the engine and training.

The layout follows the metric-learning-with-SSL-auxiliary design (PLOS ONE 2023): the similarity
space is z = L2(LayerNorm_noaffine(h)), and tags are a bias-free linear layer on z followed by a
sigmoid. Because the engine serves exactly this module, a model fine-tuned that way drops in as a
bundle with no engine change. The track embedding applies `normalize` to the mean of the excerpt
h's (not the mean of excerpt z's), so it is a module-level function as well.

A bundle may also carry a whitening of the track vector (`similarity`): a fixed affine map fitted
on training excerpts after training (training/whitening.py). Style objectives leave a few
directions of h with most of the variance, and every track of a soundtrack shares them; cosine
on whitened vectors also weighs the low-variance directions that tell one track from another
(PCA whitening for retrieval, Jégou & Chum, ECCV 2012). The tag head keeps reading z.

A bundle may also weigh hand-made statistics into the track vector (engine/statistics.py: the
pitch-class profile with `harmony_weight`, the rhythm profile with `rhythm_weight`): each
excerpt's statistics are averaged next to h, standardised with the training excerpts' mean and
spread, and appended, so the cosine of two tracks is (cos of the h parts + Σ w · cos of each
statistic) / (1 + Σ w). What a track averages per excerpt is then its "descriptor", h followed by
the weighted statistics (`descriptor`); the tag head still reads only h.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .statistics import STATISTICS, Statistic, measure

LAYER_NORM_EPS = 1e-5
L2_EPS = 1e-12


def normalize(h: torch.Tensor) -> torch.Tensor:
    """h (..., D) -> z: LayerNorm without affine, then unit L2 norm over the last axis.

    LayerNorm first removes each vector's offset and scale, so a feature that is large everywhere
    does not dominate cosine similarity; it also makes z invariant to positive rescaling of h.
    """
    # Written out rather than F.layer_norm(h, h.shape[-1:]): the traced shape would become a
    # dynamic value the ONNX exporter rejects. Same formula (biased variance, eps inside sqrt).
    mean = h.mean(dim=-1, keepdim=True)
    var = (h - mean).pow(2).mean(dim=-1, keepdim=True)
    centred = (h - mean) * torch.rsqrt(var + LAYER_NORM_EPS)
    return F.normalize(centred, p=2.0, dim=-1, eps=L2_EPS)


class EmbeddingModel(nn.Module):
    """`forward(x) -> (h, tag_probs)`; `tags` is the vocabulary the head's rows stand for."""

    def __init__(
        self,
        encoder: nn.Module,
        embedding_dim: int,
        tags: Sequence[str] = (),
        whitened: bool = False,
        harmony_weight: float = 0.0,
        rhythm_weight: float = 0.0,
        sample_rate: int | None = None,
    ) -> None:
        super().__init__()
        encoder_dim = getattr(encoder, "embedding_dim", embedding_dim)
        if encoder_dim != embedding_dim:
            raise ValueError(
                f"encoder outputs {encoder_dim}-d embeddings but embedding_dim={embedding_dim}"
            )
        tags = [str(t) for t in tags]
        if len(set(tags)) != len(tags):
            raise ValueError("tag vocabulary has duplicates")
        self.encoder = encoder
        self.embedding_dim = int(embedding_dim)
        self.tags: list[str] = tags
        with warnings.catch_warnings():
            # A tag-less model has a (0, D) head; torch warns that initialising it is a no-op.
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            self.tag_head = nn.Linear(self.embedding_dim, len(tags), bias=False)
        self.whitened = bool(whitened)
        if self.whitened:
            # Set by `set_whitening`; identity until then. Buffers, so they travel in the weights
            # file (and its model_id) and can never be paired with another encoder's weights.
            self.register_buffer("whiten_mean", torch.zeros(self.embedding_dim))
            self.register_buffer("whiten_matrix", torch.eye(self.embedding_dim))
        for name, weight in (("harmony", harmony_weight), ("rhythm", rhythm_weight)):
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"{name}_weight must be a finite number >= 0, got {weight}")
        self.harmony_weight = float(harmony_weight)
        self.rhythm_weight = float(rhythm_weight)
        self.statistics: tuple[Statistic, ...] = tuple(s for s in STATISTICS if self.weight_of(s))
        if self.statistics and not sample_rate:
            raise ValueError("a model that weighs statistics needs the sample_rate of its excerpts")
        self.sample_rate = sample_rate
        for statistic in self.statistics:
            # Set by `set_statistic` from training excerpts; buffers for the same reason as above.
            self.register_buffer(f"{statistic.name}_mean", torch.zeros(statistic.dim))
            self.register_buffer(f"{statistic.name}_scale", torch.ones(statistic.dim))

    def weight_of(self, statistic: Statistic) -> float:
        return getattr(self, f"{statistic.name}_weight")

    @property
    def n_tags(self) -> int:
        return len(self.tags)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Waveform excerpts (B, N) -> h (B, D), the pre-normalisation embedding tracks average."""
        return self.encoder(x)

    @property
    def descriptor_dim(self) -> int:
        return self.embedding_dim + sum(s.dim for s in self.statistics)

    def descriptor(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Excerpts (B, N) and their h (B, D) -> what a track averages for its vector (B, D')."""
        if not self.statistics:
            return h
        extra = measure(self.statistics, x, self.sample_rate).to(device=h.device, dtype=h.dtype)
        return torch.cat([h, extra], dim=-1)

    @staticmethod
    def normalize(h: torch.Tensor) -> torch.Tensor:
        """h -> z in the similarity space (same as the module-level `normalize`)."""
        return normalize(h)

    def similarity(self, descriptor: torch.Tensor) -> torch.Tensor:
        """A track's mean descriptor (B, D') -> the unit vector the similarity index stores."""
        if descriptor.shape[-1] != self.descriptor_dim:
            raise ValueError(
                f"expected {self.descriptor_dim}-d track descriptors, got {descriptor.shape[-1]}"
            )
        h = descriptor[..., : self.embedding_dim]
        if not self.whitened:
            z = normalize(h)
        else:
            mean = self.whiten_mean.to(device=h.device, dtype=h.dtype)
            projected = (h - mean) @ self.whiten_matrix.to(device=h.device, dtype=h.dtype)
            z = F.normalize(projected, p=2.0, dim=-1, eps=L2_EPS)
        if not self.statistics:
            return z
        parts, start = [z], self.embedding_dim
        for statistic in self.statistics:
            values = descriptor[..., start : start + statistic.dim]
            start += statistic.dim
            mean = getattr(self, f"{statistic.name}_mean").to(device=h.device, dtype=h.dtype)
            scale = getattr(self, f"{statistic.name}_scale").to(device=h.device, dtype=h.dtype)
            unit = F.normalize((values - mean) / scale, p=2.0, dim=-1, eps=L2_EPS)
            parts.append(math.sqrt(self.weight_of(statistic)) * unit)
        return F.normalize(torch.cat(parts, dim=-1), p=2.0, dim=-1, eps=L2_EPS)

    def set_whitening(self, mean: torch.Tensor, matrix: torch.Tensor) -> None:
        if not self.whitened:
            raise ValueError("this model was built without whitening (BundleConfig.whitened)")
        with torch.no_grad():
            self.whiten_mean.copy_(mean)
            self.whiten_matrix.copy_(matrix)

    def set_statistic(self, name: str, mean: torch.Tensor, scale: torch.Tensor) -> None:
        """Store the training excerpts' mean and spread of statistic `name`."""
        if name not in {s.name for s in self.statistics}:
            raise ValueError(f"this model does not weigh {name} (BundleConfig.{name}_weight)")
        if bool((scale <= 0).any()):
            raise ValueError(f"{name} scales must be positive")
        with torch.no_grad():
            getattr(self, f"{name}_mean").copy_(mean)
            getattr(self, f"{name}_scale").copy_(scale)

    def tag_probs(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, D) -> per-tag probabilities (B, T); also applies to a track's mean h."""
        return torch.sigmoid(self.tag_head(normalize(h)))

    def forward_features(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like `forward` but from the encoder's front-end output (the ONNX-exportable part)."""
        h = self.encoder.forward_features(features)
        return h, self.tag_probs(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encode(x)
        return h, self.tag_probs(h)
