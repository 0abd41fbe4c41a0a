"""Self-supervised and metric-learning losses as small pure functions of embedding tensors.

Following Deezer's multi-view SSL framework, each loss is a short function of the projected
views (z1, z2) with the paper's defaults, and knows nothing about models, heads or data: the
objectives in `training.objectives` own those. All functions take (B, D) float tensors and
return a scalar tensor, mean over the batch unless stated.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "barlow_twins",
    "byol_loss",
    "nt_xent",
    "positive_mask",
    "sinkhorn",
    "supcon",
    "swapped_prediction",
    "swav",
    "vicreg",
    "vicreg_terms",
]


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """NT-Xent (SimCLR; CLMR uses temperature 0.5, Deezer's setup 0.1).

    Each of the 2N views has its partner as the positive and the other 2N - 2 views as
    negatives; cross-entropy over cosine similarities / temperature, mean over all 2N anchors.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"nt_xent needs two (N, D) tensors, got {tuple(z1.shape)}, {z2.shape}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), -math.inf)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """BYOL's normalised MSE, 2 - 2 cos(p, z), summed over features per sample, batch-averaged.

    DESIGN.md notes a published implementation that sums over the batch axis (so the loss and
    its gradient scale with the batch size): that is a bug this function does not repeat. The
    target z is not detached here; the objective passes the target network's output.
    """
    if p.shape != z.shape:
        raise ValueError(f"byol_loss: shapes differ {tuple(p.shape)} vs {tuple(z.shape)}")
    p = F.normalize(p, dim=-1)
    z = F.normalize(z, dim=-1)
    per_sample = (p - z).pow(2).sum(dim=-1)  # = 2 - 2 cos for unit vectors
    return per_sample.mean()


def _standardise(z: Tensor, eps: float = 1e-5) -> Tensor:
    """Batch standardisation per feature (BatchNorm without affine, biased variance)."""
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)


def _off_diagonal(m: Tensor) -> Tensor:
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def barlow_twins(z1: Tensor, z2: Tensor, off_diagonal_weight: float = 5e-3) -> Tensor:
    """Barlow Twins (Zbontar et al. 2021): the views' cross-correlation matrix towards identity.

    sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2 with C computed on batch-standardised
    features; lambda = 5e-3 is the paper's value (tuned there for 8192-d projections).
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"barlow_twins needs two (N, D) tensors of one shape, got {z1.shape}")
    n = z1.shape[0]
    c = _standardise(z1).T @ _standardise(z2) / n
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = _off_diagonal(c).pow(2).sum()
    return on_diag + off_diagonal_weight * off_diag


def vicreg_terms(z1: Tensor, z2: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> dict:
    """VICReg's three unweighted terms (Bardes et al. 2022), for logging and for `vicreg`.

    invariance: MSE between the views; variance: hinge on each feature's std below gamma,
    averaged over features, summed over both views; covariance: squared off-diagonal
    covariances / D, summed over both views. (The paper's equations sum the two views; its
    reference code averages the variance term over them, i.e. half our value.)
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"vicreg needs two (N, D) tensors of one shape, got {z1.shape}")
    n, d = z1.shape
    invariance = F.mse_loss(z1, z2)
    variance = z1.new_zeros(())
    covariance = z1.new_zeros(())
    for z in (z1, z2):
        std = torch.sqrt(z.var(dim=0) + eps)
        variance = variance + F.relu(gamma - std).mean()
        centred = z - z.mean(dim=0)
        cov = centred.T @ centred / max(1, n - 1)
        covariance = covariance + _off_diagonal(cov).pow(2).sum() / d
    return {"invariance": invariance, "variance": variance, "covariance": covariance}


def vicreg(
    z1: Tensor,
    z2: Tensor,
    inv: float = 25.0,
    var: float = 25.0,
    cov: float = 1.0,
    gamma: float = 1.0,
) -> Tensor:
    """VICReg with the paper's weights lambda = 25, mu = 25, nu = 1 and target std gamma = 1."""
    terms = vicreg_terms(z1, z2, gamma)
    return inv * terms["invariance"] + var * terms["variance"] + cov * terms["covariance"]


@torch.no_grad()
def sinkhorn(scores: Tensor, epsilon: float = 0.05, iters: int = 3) -> Tensor:
    """Sinkhorn-Knopp codes (SwAV): soft assignments of B samples to K prototypes.

    Returns Q (B, K) whose rows sum to 1 (each sample is a distribution over prototypes) and
    whose columns sum to about B/K, exactly in the limit of iterations (prototypes equally
    used: the equipartition constraint that keeps clustering from collapsing onto one
    prototype). SwAV's 3 iterations balance only roughly (column sums within tens of per cent
    on random scores), which is enough to keep every prototype in use.
    Computed in the log domain (float32; MPS has no float64), so epsilon = 0.05 with cosine
    scores cannot overflow exp().
    """
    if scores.ndim != 2:
        raise ValueError(f"sinkhorn needs (B, K) scores, got shape {tuple(scores.shape)}")
    b, k = scores.shape
    log_q = scores.float() / epsilon
    log_q = log_q - torch.logsumexp(log_q.flatten(), dim=0)
    for _ in range(iters):
        # Columns (prototypes) to total mass 1/K each, then rows (samples) to 1/B each.
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(k)
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(b)
    return (log_q.exp() * b).to(scores.dtype)


def swav(
    scores1: Tensor,
    scores2: Tensor,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    sinkhorn_iters: int = 3,
) -> Tensor:
    """SwAV's swapped prediction (Caron et al. 2020) with the paper's defaults.

    scores are (B, K) cosine similarities between L2-normalised projections and L2-normalised
    prototypes. Each view's Sinkhorn codes (no gradient) are the targets for the other view's
    softmax(scores / temperature); cross-entropy averaged over both directions and the batch.
    """
    q1 = sinkhorn(scores1.detach(), epsilon, sinkhorn_iters)
    q2 = sinkhorn(scores2.detach(), epsilon, sinkhorn_iters)
    return swapped_prediction(scores1, scores2, q1, q2, temperature)


def swapped_prediction(
    scores1: Tensor, scores2: Tensor, q1: Tensor, q2: Tensor, temperature: float = 0.1
) -> Tensor:
    """SwAV's loss given precomputed codes (e.g. balanced together with a queue of past batches):
    -1/2 [q1 . log softmax(scores2 / T) + q2 . log softmax(scores1 / T)], batch mean."""
    log_p1 = F.log_softmax(scores1 / temperature, dim=1)
    log_p2 = F.log_softmax(scores2 / temperature, dim=1)
    return -0.5 * ((q1 * log_p2).sum(dim=1).mean() + (q2 * log_p1).sum(dim=1).mean())


def positive_mask(labels: Tensor) -> Tensor:
    """(M, M) bool "same group" matrix from any of the label forms `supcon` accepts.

    labels (M,) int: same value = positive. labels (M, G) int: each row lists the group ids of
    a sample (padded with negatives); samples sharing any id >= 0 are positives (a track in
    several playlists). labels (M, M) bool: the mask itself. The diagonal is always False.
    """
    if labels.dtype == torch.bool:
        if labels.ndim != 2 or labels.shape[0] != labels.shape[1]:
            raise ValueError("a boolean positive mask must be square (M, M)")
        mask = labels.clone()
    elif labels.ndim == 1:
        mask = labels[:, None] == labels[None, :]
    elif labels.ndim == 2:
        valid = labels >= 0
        # (M, 1, G, 1) vs (1, M, 1, G): any shared valid id.
        same = labels[:, None, :, None] == labels[None, :, None, :]
        both = valid[:, None, :, None] & valid[None, :, None, :]
        mask = (same & both).flatten(2).any(dim=2)
    else:
        raise ValueError(f"labels must be (M,), (M, G) or (M, M) bool, got {tuple(labels.shape)}")
    mask.fill_diagonal_(False)
    return mask


def supcon(z: Tensor, labels: Tensor, temperature: float = 0.1) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, the L_out form).

    For each anchor, the mean over its positives of -log softmax over all other samples; anchors
    without any positive in the batch are left out of the mean (they have nothing to pull
    towards). `labels` as in `positive_mask`. Used for playlist/album pairs: the pair's two
    crops are one group, and other batch members sharing a playlist or album join it.
    """
    if z.ndim != 2:
        raise ValueError(f"supcon needs (M, D) embeddings, got shape {tuple(z.shape)}")
    m = z.shape[0]
    positives = positive_mask(labels.to(z.device))
    if positives.shape[0] != m:
        raise ValueError(f"labels describe {positives.shape[0]} samples, z has {m}")
    z = F.normalize(z, dim=1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(m, dtype=torch.bool, device=z.device)
    others = logits.masked_fill(self_mask, -math.inf)
    log_prob = logits - torch.logsumexp(others, dim=1, keepdim=True)
    counts = positives.sum(dim=1)
    has = counts > 0
    if not bool(has.any()):
        return z.sum() * 0.0  # keeps the graph (and the gradient) well-defined
    per_anchor = -(log_prob * positives).sum(dim=1)[has] / counts[has]
    return per_anchor.mean()
