"""Fit the whitening of the track vector on frozen features (`musicssl-train whiten`).

Style objectives (album co-membership, tags) teach the encoder to put a soundtrack's tracks close
together, so a few directions of h carry most of the variance and every track of an album
shares them; plain cosine is then dominated by "which album" and can barely tell two tracks of
the same soundtrack apart (identification 0.64 on the corpus's validation soundtracks). PCA
whitening, fitted on training excerpts, rescales the principal directions by
(variance + eps · largest variance)^(-alpha/2): alpha = 1 is full whitening, eps keeps
near-empty directions from being blown up into noise. This is the standard post-processing of
retrieval descriptors (Jégou & Chum, "Negative evidences and co-occurrences in image retrieval:
the benefit of PCA and whitening", ECCV 2012). Written on numpy's `eigh` rather than taken from
scikit-learn: its `PCA(whiten=True)` has neither the partial power alpha nor the eps floor, and
it would be a dependency for six lines.

PCA whitening treats all variance alike, but the variance that moves an excerpt around inside
its own track (a quiet intro, a drum break) is what hides the track when its two halves are
compared. So a second step whitens the within-track covariance, measured in the PCA-whitened
space: directions along which a track wanders are shrunk, directions that stay put within a
track but differ between tracks gain weight. This is within-class covariance normalisation
(WCCN, Hatch, Kingsbury & Stolcke, Interspeech 2006), the step speaker verification uses to
recognise one voice across recordings; here the "speakers" are the training tracks. Again
regularised by a power and a floor, and again a single affine map, so the bundle format and
the engine do not change.

The statistics come from every excerpt (or `excerpts` evenly spaced ones) of the training part
of the checkpoint's own data. Only the similarity vector changes; tags still read z.

With `harmony_weight` or `rhythm_weight` > 0 the same pass also measures the mean and spread of
the excerpts' pitch-class profiles (engine/harmony.py) or onset autocorrelations
(engine/rhythm.py), which standardise those parts of the track vector. Whitening cannot supply
what h lacks: the encoder barely hears key or groove, and these statistics add them.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
from musicssl.engine.bundle import STATISTIC_WEIGHTS, build_model
from musicssl.engine.statistics import STATISTICS

from .config import ConfigError, WhitenConfig
from .post_training import excerpt_embeddings, open_finished_run, save_step
from .pretrain import warm_cache

log = logging.getLogger(__name__)

RESULT_NAME = "whitening.json"
# Buffers this step (re)fits; a source that already has them gets them replaced.
FITTED = (
    "whiten_mean",
    "whiten_matrix",
    *(f"{s.name}_{part}" for s in STATISTICS for part in ("mean", "scale")),
)


def _inverse_root(covariance: np.ndarray, alpha: float, eps: float) -> np.ndarray:
    """The covariance's principal directions, scaled by (variance + eps * largest)^(-alpha/2)."""
    variances, directions = np.linalg.eigh(covariance)
    variances = np.maximum(variances, 0.0)
    if variances.max() <= 0:
        raise ValueError("the features do not vary; nothing to whiten")
    return directions * (variances + eps * variances.max()) ** (-alpha / 2)


def whitening(h: np.ndarray, alpha: float, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(mean, matrix) such that (x - mean) @ matrix is x in regularised PCA-whitened coordinates."""
    h = np.asarray(h, np.float64)
    if h.ndim != 2 or len(h) < 2:
        raise ValueError(f"need at least 2 feature rows to fit a whitening, got {h.shape}")
    mean = h.mean(axis=0)
    return mean, _inverse_root(np.cov(h - mean, rowvar=False), alpha, eps)


def within_track_whitening(
    x: np.ndarray, track: np.ndarray, alpha: float, eps: float
) -> np.ndarray:
    """Matrix that whitens the spread of excerpts around their own track's mean (WCCN).

    `x` are excerpt features (already PCA-whitened), `track` each row's track index. Tracks with
    a single excerpt have no spread and are left out.
    """
    x = np.asarray(x, np.float64)
    track = np.asarray(track)
    if len(track) != len(x):
        raise ValueError(f"{len(x)} feature rows but {len(track)} track indices")
    _, inverse, counts = np.unique(track, return_inverse=True, return_counts=True)
    sums = np.zeros((len(counts), x.shape[1]))
    np.add.at(sums, inverse, x)
    deviations = (x - sums[inverse] / counts[inverse, None])[counts[inverse] > 1]
    if not len(deviations):
        raise ValueError("need a track with at least 2 excerpts to measure within-track spread")
    return _inverse_root(deviations.T @ deviations / len(deviations), alpha, eps)


def fit_whitening(cfg: WhitenConfig) -> Path:
    """Write `<out>/best.pt` (the checkpoint with the whitening) and `<out>/whitening.json`."""
    if not 0.0 < cfg.alpha <= 1.0 or cfg.eps <= 0.0:
        raise ConfigError(f"need 0 < alpha <= 1 and eps > 0, got alpha={cfg.alpha} eps={cfg.eps}")
    if not 0.0 <= cfg.within_alpha <= 1.0 or cfg.within_eps <= 0.0:
        raise ConfigError(
            "need 0 <= within_alpha <= 1 and within_eps > 0, got "
            f"within_alpha={cfg.within_alpha} within_eps={cfg.within_eps}"
        )
    if cfg.within_alpha and cfg.excerpts == 1:
        raise ConfigError("the within-track step needs 2+ excerpts per track (or within_alpha 0)")
    weights = {key: getattr(cfg, key) for key in STATISTIC_WEIGHTS}
    for key, weight in weights.items():
        if not (np.isfinite(weight) and weight >= 0):
            raise ConfigError(f"{key} must be >= 0, got {weight}")
    if cfg.excerpts < 0:
        raise ConfigError(f"excerpts must be >= 0 (0: every excerpt), got {cfg.excerpts}")
    run = open_finished_run(cfg.checkpoint, cfg.data, cfg.out, "whiten", cfg.device, cfg.threads)
    train = warm_cache(run.cache, run.train, run.data, cfg.progress)
    if not train:
        raise ConfigError(f"no decodable tracks in the training split of {run.data.library}")
    statistics = [s for s in STATISTICS if weights[f"{s.name}_weight"]]
    features, track = excerpt_embeddings(
        run, train, cfg.excerpts or None, cfg.batch_size, cfg.progress, statistics
    )
    features = features.double().numpy()
    ends = np.cumsum([run.model.embedding_dim, *(s.dim for s in statistics)])
    h, *measured = np.split(features, ends[:-1], axis=1)
    mean, matrix = whitening(h, cfg.alpha, cfg.eps)
    if cfg.within_alpha:
        white = (h - mean) @ matrix
        matrix = matrix @ within_track_whitening(white, track, cfg.within_alpha, cfg.within_eps)
    log.info("whitening fitted on %d excerpts of %d tracks", len(h), len(train))

    whitened_config = dataclasses.replace(
        run.bundle_config, whitened=True, **{k: float(w) for k, w in weights.items()}
    )
    whitened = build_model(whitened_config)
    # Everything but the fitted buffers comes from the run; older fits of them are replaced.
    kept = {k: v for k, v in run.model.to("cpu").state_dict().items() if k not in FITTED}
    result = whitened.load_state_dict(kept, strict=False)
    if result.unexpected_keys or set(result.missing_keys) - set(FITTED):
        raise ConfigError(f"{run.source}: weights do not fit the recorded model: {result}")
    whitened.set_whitening(torch.from_numpy(mean).float(), torch.from_numpy(matrix).float())
    for statistic, values in zip(statistics, measured, strict=True):
        # The floor keeps the standardisation finite if a value never varies (silent excerpts).
        scale = np.maximum(values.std(axis=0), 1e-6)
        whitened.set_statistic(
            statistic.name,
            torch.from_numpy(values.mean(axis=0)).float(),
            torch.from_numpy(scale).float(),
        )
    summary = {
        "source": str(run.source),
        "alpha": cfg.alpha,
        "eps": cfg.eps,
        "within_alpha": cfg.within_alpha,
        "within_eps": cfg.within_eps,
        **weights,
        "excerpts_per_track": cfg.excerpts or "all",
        "tracks": len(train),
        "excerpts": len(h),
    }
    return save_step(run, whitened, whitened_config, RESULT_NAME, summary, whitening=summary)


__all__ = ["RESULT_NAME", "fit_whitening", "whitening", "within_track_whitening"]
