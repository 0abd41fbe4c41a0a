"""Evaluation metrics, in plain numpy/scikit-learn so any feature set can be scored the same way.

Tagging (macro ROC-AUC, PR-AUC) follows the auto-tagging literature. Partial labels are the normal
case here (a user tags a few tracks, says "no" to a few more), so every tagging metric takes an
optional boolean mask: entries outside it are unknown and are neither positives nor negatives.

Retrieval (R@K, M@K) follows the deep-metric-learning protocol the PLOS ONE 2023 paper reports
("Auxiliary self-supervision to metric learning for music similarity-based retrieval and
auto-tagging"): every item is a query against all the *other* items (leave-one-out), ranked by
cosine similarity, and a retrieved item is relevant when it shares a class with the query. A class
can be a single group id per item (album, soundtrack, artist) or a multi-hot tag row; with tags,
"shares a class" means "has at least one positive tag in common".

Ties in similarity are broken by item order (a stable sort), so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

RECALL_KS: tuple[int, ...] = (1, 2, 4, 8)
MAP_KS: tuple[int, ...] = (1, 4, 7, 10)


# ---------------------------------------------------------------------------------------------
# tagging


def _tag_columns(
    scores: np.ndarray, targets: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if scores.ndim == 1:
        scores, targets = scores[:, None], targets[:, None]
        mask = None if mask is None else np.asarray(mask)[:, None]
    if scores.shape != targets.shape:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} differ in shape")
    mask = np.ones(targets.shape, bool) if mask is None else np.asarray(mask, bool)
    if mask.shape != targets.shape:
        raise ValueError(f"mask {mask.shape} and targets {targets.shape} differ in shape")
    return scores, targets, mask


def evaluable_tags(targets: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Indices of tags with at least one known positive and one known negative.

    ROC-AUC and PR-AUC are undefined (or trivially 1) for a tag without both kinds of labelled
    examples, so such tags are skipped rather than counted as 0 or 1: averaging them in would make
    a small test split look better or worse than the model is.
    """
    _, targets, mask = _tag_columns(np.zeros_like(targets, dtype=np.float64), targets, mask)
    pos = ((targets >= 0.5) & mask).sum(axis=0)
    neg = ((targets < 0.5) & mask).sum(axis=0)
    return np.flatnonzero((pos > 0) & (neg > 0))


def roc_auc(positives: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC-AUC as the Mann-Whitney statistic (ties count one half).

    Equal to scikit-learn's `roc_auc_score`, without its per-call validation overhead: probes
    evaluate it after every epoch for every tag.
    """
    positives = np.asarray(positives, bool)
    n_pos = int(positives.sum())
    n_neg = positives.size - n_pos
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(np.asarray(scores, np.float64))
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(positives: np.ndarray, scores: np.ndarray) -> float:
    """Step-wise average precision, sum over thresholds of (R_n - R_{n-1}) * P_n.

    Thresholds are the distinct scores (tied examples enter together), exactly as
    scikit-learn's `average_precision_score` defines it.
    """
    positives = np.asarray(positives, bool)
    n_pos = int(positives.sum())
    if not n_pos:
        return float("nan")
    scores = np.asarray(scores, np.float64)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, hits = scores[order], positives[order]
    # the last index of each run of equal scores is where a threshold admits the whole run
    ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    tp = np.cumsum(hits)[ends]
    precision = tp / (ends + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def per_tag_scores(
    scores: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None
) -> dict[int, tuple[float, float]]:
    """{tag index: (ROC-AUC, PR-AUC)} for every evaluable tag (see `evaluable_tags`)."""
    scores, targets, mask = _tag_columns(scores, targets, mask)
    out: dict[int, tuple[float, float]] = {}
    for t in evaluable_tags(targets, mask):
        known = mask[:, t]
        y = targets[known, t] >= 0.5
        s = scores[known, t]
        out[int(t)] = (roc_auc(y, s), average_precision(y, s))
    return out


def macro_roc_auc(scores: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Unweighted mean of per-tag ROC-AUC over evaluable tags; NaN when no tag is evaluable.

    Only masked-in (labelled) entries take part; tags lacking a labelled positive or negative are
    skipped (`evaluable_tags`).
    """
    scores, targets, mask = _tag_columns(scores, targets, mask)
    values = [
        roc_auc(targets[mask[:, t], t] >= 0.5, scores[mask[:, t], t])
        for t in evaluable_tags(targets, mask)
    ]
    return float(np.mean(values)) if values else float("nan")


def macro_pr_auc(scores: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Unweighted mean of per-tag average precision (PR-AUC), same tag skipping as ROC-AUC.

    Average precision (scikit-learn's step-wise estimate, no interpolation) is used as PR-AUC, as
    in the MagnaTagATune/MTG-Jamendo tagging papers.
    """
    per_tag = per_tag_scores(scores, targets, mask)
    return float(np.mean([v[1] for v in per_tag.values()])) if per_tag else float("nan")


def tagging_metrics(
    scores: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, float]:
    """Both macro scores plus how many tags they averaged over (so a reader can judge them)."""
    per_tag = per_tag_scores(scores, targets, mask)
    if not per_tag:
        return {"roc_auc": float("nan"), "pr_auc": float("nan"), "n_tags": 0}
    return {
        "roc_auc": float(np.mean([v[0] for v in per_tag.values()])),
        "pr_auc": float(np.mean([v[1] for v in per_tag.values()])),
        "n_tags": len(per_tag),
    }


def macro_f1(decisions: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Unweighted mean over evaluable tags of the F1 of yes/no `decisions` on known labels.

    What ROC-AUC cannot show: whether the thresholds turn scores into the right tags. Same tag
    skipping as the AUCs, so the numbers are comparable."""
    decisions, targets, mask = _tag_columns(decisions, targets, mask)
    values = []
    for t in evaluable_tags(targets, mask):
        known = mask[:, t]
        said, truth = decisions[known, t] >= 0.5, targets[known, t] >= 0.5
        values.append(2.0 * np.sum(said & truth) / (said.sum() + truth.sum()))
    return float(np.mean(values)) if values else float("nan")


# ---------------------------------------------------------------------------------------------
# retrieval


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def relevance_matrix(labels: np.ndarray | Sequence[object]) -> np.ndarray:
    """(N, N) bool: item j is relevant to query i. The diagonal is False (leave-one-out).

    `labels` is either one group per item (1-D; None or NaN means "no group", relevant to
    nothing) or an (N, T) multi-hot matrix (relevant = at least one positive tag in common).
    """
    arr = np.asarray(labels, dtype=object)
    if arr.ndim == 2:
        multi = np.asarray(labels, dtype=np.float64) >= 0.5
        rel = (multi.astype(np.int64) @ multi.T.astype(np.int64)) > 0
    elif arr.ndim == 1:
        keys = [None if _missing(v) else v for v in arr.tolist()]
        ids: dict[object, int] = {}
        codes = np.array([-1 if k is None else ids.setdefault(k, len(ids)) for k in keys])
        rel = (codes[:, None] == codes[None, :]) & (codes[:, None] >= 0)
    else:
        raise ValueError(f"labels must be 1-D groups or an (N, T) matrix, got shape {arr.shape}")
    np.fill_diagonal(rel, False)
    return rel


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _ranked_relevance(
    embeddings: np.ndarray,
    labels: np.ndarray | Sequence[object],
    similarities: np.ndarray | None = None,
) -> np.ndarray:
    """(N, N-1) relevance of each query's neighbours, nearest first, the query itself removed.

    Neighbours are ranked by cosine of the embeddings, or by `similarities` (N, N) where the app
    ranks by another score (engine/excerpt_sets.py)."""
    z = _unit(embeddings)
    n = z.shape[0]
    rel = relevance_matrix(labels)
    if rel.shape[0] != n:
        raise ValueError(f"{n} embeddings but {rel.shape[0]} labels")
    sims = z @ z.T if similarities is None else np.array(similarities, np.float64)
    if sims.shape != (n, n):
        raise ValueError(f"similarities {sims.shape} do not match {n} embeddings")
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, : n - 1]
    return np.take_along_axis(rel, order, axis=1)


def recall_at_k(
    embeddings: np.ndarray,
    labels: np.ndarray | Sequence[object],
    ks: Sequence[int] = RECALL_KS,
    similarities: np.ndarray | None = None,
) -> dict[int, float]:
    """R@K as used in deep metric learning: the share of queries with >= 1 relevant item among
    their K nearest neighbours (cosine, the query excluded).

    It is a hit rate, not IR recall (the number of relevant items found over all relevant
    items): a query either finds something of its class in the top K or not. Queries that have
    no relevant item anywhere in the collection cannot score and are left out of the mean.
    """
    ranked = _ranked_relevance(embeddings, labels, similarities)
    has_any = ranked.any(axis=1)
    out = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"K must be >= 1, got {k}")
        hits = ranked[has_any, :k].any(axis=1)
        out[int(k)] = float(hits.mean()) if hits.size else float("nan")
    return out


def map_at_k(
    embeddings: np.ndarray,
    labels: np.ndarray | Sequence[object],
    ks: Sequence[int] = MAP_KS,
    similarities: np.ndarray | None = None,
) -> dict[int, float]:
    """M@K: mean over queries of AP@K = (1 / min(K, R)) * sum_{k<=K} P@k * rel_k.

    rel_k is 1 when the k-th nearest neighbour (query excluded) is relevant, P@k the precision of
    the top k, and R the number of relevant items in the collection for that query. Dividing by
    min(K, R) makes a perfect ranking score 1 even when a class has fewer than K other members.
    Queries with R = 0 are left out of the mean, as in `recall_at_k`.
    """
    ranked = _ranked_relevance(embeddings, labels, similarities)
    n_rel = ranked.sum(axis=1)
    keep = n_rel > 0
    ranked, n_rel = ranked[keep].astype(np.float64), n_rel[keep]
    out = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"K must be >= 1, got {k}")
        if not ranked.size:
            out[int(k)] = float("nan")
            continue
        top = ranked[:, :k]
        precision = np.cumsum(top, axis=1) / np.arange(1, top.shape[1] + 1)
        ap = (precision * top).sum(axis=1) / np.minimum(k, n_rel)
        out[int(k)] = float(ap.mean())
    return out


def retrieval_metrics(
    embeddings: np.ndarray,
    labels: np.ndarray | Sequence[object],
    recall_ks: Sequence[int] = RECALL_KS,
    map_ks: Sequence[int] = MAP_KS,
    similarities: np.ndarray | None = None,
) -> dict[str, float]:
    """R@K and M@K in one dict keyed "R@1", "M@10", ..., plus the number of scoring queries."""
    out: dict[str, float] = {}
    recall = recall_at_k(embeddings, labels, recall_ks, similarities)
    out.update({f"R@{k}": v for k, v in recall.items()})
    out.update({f"M@{k}": v for k, v in map_at_k(embeddings, labels, map_ks, similarities).items()})
    out["queries"] = int(relevance_matrix(labels).any(axis=1).sum())
    return out


def identification_hits(
    first_halves: np.ndarray, second_halves: np.ndarray, similarities: np.ndarray | None = None
) -> np.ndarray:
    """Per track: is its first-half embedding nearest (cosine) to its own second half?

    Row i of both arrays is track i. Each first half is a query against every track's second half
    (including its own), so chance level is 1/N. `similarities` (N, N), first halves × second
    halves, replaces the cosine where the app ranks by another score (engine/excerpt_sets.py).
    """
    a, b = _unit(first_halves), _unit(second_halves)
    if a.shape != b.shape:
        raise ValueError(f"first halves {a.shape} and second halves {b.shape} differ")
    if not a.shape[0]:
        return np.zeros(0, bool)
    sims = a @ b.T if similarities is None else np.asarray(similarities)
    if sims.shape != (a.shape[0], a.shape[0]):
        raise ValueError(f"similarities {sims.shape} do not match {a.shape[0]} tracks")
    return np.argmax(sims, axis=1) == np.arange(a.shape[0])


def identification_accuracy(first_halves: np.ndarray, second_halves: np.ndarray) -> float:
    """Share of `identification_hits`. A model can score high here by recognising a recording
    without having learned anything about style; that is why it is reported next to retrieval
    by album, not instead of it."""
    hits = identification_hits(first_halves, second_halves)
    return float(hits.mean()) if len(hits) else float("nan")


def best_f1_threshold(scores: np.ndarray, positives: np.ndarray, default: float = 0.5) -> float:
    """Decision threshold in [0, 1] that maximises F1 on one tag's (validation) scores.

    Candidates are midpoints between consecutive distinct scores (plus the extremes), so the
    threshold falls between examples rather than on one, which transfers better to new data.
    With no positive example F1 is 0 everywhere, so `default` is returned.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, bool)
    if not positives.any():
        return float(default)
    distinct = np.unique(scores)
    candidates = np.concatenate(
        [[distinct[0] - 1e-6], (distinct[:-1] + distinct[1:]) / 2, [distinct[-1] + 1e-6]]
    )
    best_t, best_f1 = float(default), -1.0
    n_pos = positives.sum()
    for t in candidates:
        predicted = scores >= t
        tp = np.sum(predicted & positives)
        denom = predicted.sum() + n_pos
        f1 = 2.0 * tp / denom if denom else 0.0
        if f1 > best_f1 + 1e-12:
            best_t, best_f1 = float(t), f1
    return float(np.clip(best_t, 0.0, 1.0))


__all__ = [
    "MAP_KS",
    "RECALL_KS",
    "best_f1_threshold",
    "evaluable_tags",
    "identification_accuracy",
    "identification_hits",
    "macro_f1",
    "macro_pr_auc",
    "macro_roc_auc",
    "map_at_k",
    "average_precision",
    "per_tag_scores",
    "recall_at_k",
    "relevance_matrix",
    "retrieval_metrics",
    "roc_auc",
    "tagging_metrics",
]
