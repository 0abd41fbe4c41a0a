"""Collapse detection: the known failure of non-contrastive and clustering objectives.

BYOL, Barlow Twins, VICReg, SwAV and DINO have trivial solutions (every input -> the same
vector, or -> one cluster) that their tricks only make unlikely; when one is reached, the loss
can still look fine. So each objective reports, per batch, statistics of the embedding the
engine will serve (z = normalize(h), see engine/embedding_model.py), and `is_collapsed` turns
them into a yes/no the training loop can log, warn about or stop on.

The statistics (after L2-normalising each row once more, so any embedding can be passed):
- embedding_std: mean over dimensions of the per-dimension std across the batch. Unit vectors
  spread evenly over D dimensions have std 1/sqrt(D) per dimension (SimSiam, Chen & He 2021,
  use this reference); `embedding_std_ratio` is embedding_std * sqrt(D), about 1 when healthy
  and 0 when every sample maps to the same point. Variance squeezed into a few dimensions
  (dimensional collapse) lowers it as well: all of it in one dimension gives 1/sqrt(D).
- mean_cosine: mean cosine similarity over distinct pairs; -> 1 when all rows coincide.
- effective_rank: exp(entropy of the normalised singular values) of the centred batch
  (RankMe, Garrido et al. 2023); how many directions the batch really uses.
- cluster_entropy (with `assignments`): entropy of the cluster-usage histogram divided by its
  maximum log(min(B, K)); 1 = clusters used evenly, 0 = one cluster takes everything.
  Pass the network's own scores (B, K) or hard assignments (B,), not Sinkhorn codes, which
  are balanced by construction and would hide the collapse.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["THRESHOLDS", "collapse_metrics", "is_collapsed"]

# Collapsed when any holds. Random-init encoders already sit in a narrow cone (measured on
# music-like signals: melcnn std_ratio 0.13-0.19 / mean_cosine 0.96-0.98, samplecnn 0.13 /
# 0.97) and still retrieve well (DESIGN.md), so the limits are set well beyond that:
# - std_ratio < 0.02: rows spread ~50x less than an even spread, or all variance in one of
#   >= 2500 dimensions;
# - mean_cosine > 0.999: rows are one vector up to noise;
# - effective_rank < 1.5 (batches of >= 8 only): the batch varies along a single direction;
# - cluster_entropy < 0.1: one cluster holds nearly everything.
THRESHOLDS: dict[str, float] = {
    "embedding_std_ratio": 0.02,
    "mean_cosine": 0.999,
    "effective_rank": 1.5,
    "cluster_entropy": 0.1,
}
MIN_BATCH_FOR_RANK = 8


@torch.no_grad()
def collapse_metrics(z: Tensor, assignments: Tensor | None = None) -> dict[str, float]:
    """Collapse statistics of a batch of embeddings z (B, D); see the module docstring."""
    if z.ndim != 2:
        raise ValueError(f"collapse_metrics needs (B, D) embeddings, got {tuple(z.shape)}")
    # On the CPU: a (B, D) batch is small, and not every accelerator backend has svdvals.
    z = F.normalize(z.detach().float().cpu(), dim=1)
    b, d = z.shape
    metrics: dict[str, float] = {"batch_size": float(b)}
    std = z.std(dim=0, unbiased=False).mean() if b > 1 else z.new_zeros(())
    metrics["embedding_std"] = float(std)
    metrics["embedding_std_ratio"] = float(std * math.sqrt(d))
    if b > 1:
        sims = z @ z.T
        off = sims.sum() - sims.diagonal().sum()
        metrics["mean_cosine"] = float(off / (b * (b - 1)))
        singular = torch.linalg.svdvals(z - z.mean(dim=0))
        total = singular.sum()
        if total > 1e-12:
            p = singular / total
            p = p[p > 0]
            metrics["effective_rank"] = float(torch.exp(-(p * p.log()).sum()))
        else:
            metrics["effective_rank"] = 0.0
    else:
        metrics["mean_cosine"] = 1.0
        metrics["effective_rank"] = 0.0
    if assignments is not None:
        metrics.update(_cluster_usage(assignments, b))
    return metrics


def _cluster_usage(assignments: Tensor, b: int) -> dict[str, float]:
    assignments = assignments.detach()
    if assignments.ndim == 2:
        k = assignments.shape[1]
        hard = assignments.argmax(dim=1)
    elif assignments.ndim == 1:
        hard = assignments.long()
        k = int(hard.max()) + 1 if hard.numel() else 1
    else:
        raise ValueError("assignments must be (B, K) scores or (B,) cluster ids")
    counts = torch.bincount(hard.flatten().cpu(), minlength=k).double()
    p = counts / counts.sum().clamp_min(1)
    nz = p[p > 0]
    entropy = float(-(nz * nz.log()).sum())
    top = math.log(min(max(b, 1), k))
    return {
        "cluster_entropy": entropy / top if top > 0 else 0.0,
        "clusters_used": float((counts > 0).sum()),
    }


def is_collapsed(metrics: dict[str, float]) -> bool:
    """True when any statistic present crosses its threshold in `THRESHOLDS`."""
    if metrics.get("embedding_std_ratio", math.inf) < THRESHOLDS["embedding_std_ratio"]:
        return True
    if metrics.get("mean_cosine", -math.inf) > THRESHOLDS["mean_cosine"]:
        return True
    rank = metrics.get("effective_rank", math.inf)
    if metrics.get("batch_size", 0) >= MIN_BATCH_FOR_RANK and rank < THRESHOLDS["effective_rank"]:
        return True
    return metrics.get("cluster_entropy", math.inf) < THRESHOLDS["cluster_entropy"]
