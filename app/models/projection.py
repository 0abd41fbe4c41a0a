"""2-D projections of the embedding space for the library map, in plain numpy.

Why PCA via the d×d scatter matrix: the two leading principal axes of 100,000 × 256 vectors
are those of Xᵀ X (256 × 256), one BLAS product plus a small SVD, well under a second, where
an SVD of the full matrix would take many seconds. No extra dependency (no sklearn, no UMAP).
"""

from __future__ import annotations

import numpy as np


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """(n, d) → (n, 2) coordinates on the two leading principal axes, scaled to [0, 1]."""
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    if n == 0:
        return np.zeros((0, 2), np.float32)
    if n == 1 or x.ndim != 2 or x.shape[1] == 0:
        return np.full((n, 2), 0.5, np.float32)
    centred = x - x.mean(axis=0, keepdims=True)
    scatter = centred.T @ centred
    # Symmetric PSD: SVD gives the eigenvectors sorted by eigenvalue, largest first.
    u, _s, _vt = np.linalg.svd(scatter)
    axes = u[:, :2]
    # Fix each axis' sign so the map does not flip between runs on the same data.
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), [0, 1]])
    signs[signs == 0] = 1.0
    coords = centred @ (axes * signs)
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return normalise(coords)


def normalise(coords: np.ndarray) -> np.ndarray:
    """Scale both axes by the same factor into [0, 1] (keeps distances comparable)."""
    lo = coords.min(axis=0)
    span = float((coords.max(axis=0) - lo).max())
    if span <= 1e-12:
        return np.full(coords.shape, 0.5, np.float32)
    out = (coords - lo) / span
    out += (1.0 - out.max(axis=0)) / 2.0  # centre the shorter axis
    return out.astype(np.float32)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Boolean mask of points inside a closed polygon (even-odd rule), vectorised over points."""
    points = np.asarray(points, dtype=np.float64)
    polygon = np.asarray(polygon, dtype=np.float64)
    inside = np.zeros(points.shape[0], dtype=bool)
    if polygon.shape[0] < 3 or points.shape[0] == 0:
        return inside
    x, y = points[:, 0], points[:, 1]
    xj, yj = polygon[-1]
    for xi, yi in polygon:
        crosses = (yi > y) != (yj > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = (xj - xi) * (y - yi) / (yj - yi) + xi
        inside ^= crosses & (x < x_at)
        xj, yj = xi, yi
    return inside
