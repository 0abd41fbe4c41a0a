"""Which parts of a track the encoder hears: the excerpt policies, with bounded memory.

"all" covers the track with non-overlapping excerpts (the literature's track-level protocol);
"spaced" seeks to N evenly spaced excerpts, decoding a fraction of the file — the speed/quality
trade-off is measured in bench/analysis_bench.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from . import decode

POLICIES = ("spaced", "all")
# Decode-and-cut in chunks of this many excerpts so an 80-minute file never sits in memory whole.
CHUNK_EXCERPTS = 32
# Excerpts per track for "spaced" unless the user picks another count. 16 rather than 8: on the
# default model's validation soundtracks it raised first-half -> second-half identification from
# 0.79 to 0.90 and soundtrack retrieval M@10 from 0.55 to 0.58 (docs/MODEL_CARD.md), at a cost
# bench/analysis_bench.py keeps far above the speed target. Training's evaluation and threshold
# tuning use the same count, so what is measured is what the app computes.
DEFAULT_COUNT = 16


@dataclass(frozen=True)
class ExcerptPolicy:
    name: str = "spaced"
    count: int = DEFAULT_COUNT  # excerpts per track for "spaced"

    def __post_init__(self) -> None:
        if self.name not in POLICIES:
            raise ValueError(f"unknown excerpt policy {self.name!r}; choose from {POLICIES}")
        if self.count < 1:
            raise ValueError("an excerpt policy needs at least one excerpt")


@dataclass
class ExcerptChunk:
    """Some excerpts of one track; `decoded_seconds` is set on the last chunk of a full decode."""

    excerpts: np.ndarray  # (E, N) float32
    last: bool
    decoded_seconds: float | None = None


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad a short excerpt: a track shorter than one excerpt is still analysed."""
    if x.shape[0] >= n:
        return x[:n]
    return np.pad(x, (0, n - x.shape[0]))


def _all_excerpts(path: str, rate: int, n: int) -> Iterator[ExcerptChunk]:
    block_seconds = CHUNK_EXCERPTS * n / rate
    total = 0
    pending: list[np.ndarray] = []
    for block in decode.stream(path, rate, block_seconds):
        total += block.shape[0]
        if pending:  # the short tail of the previous block starts this one
            block = np.concatenate([pending.pop(), block])
        whole = block.shape[0] // n
        if whole:
            yield ExcerptChunk(block[: whole * n].reshape(whole, n), last=False)
        if block.shape[0] % n:
            pending.append(block[whole * n :])
    tail = pending[0] if pending else np.zeros(0, np.float32)
    # Keep a final partial excerpt only when it is the whole track or a substantial part of one.
    if total < n or tail.shape[0] >= n // 2:
        yield ExcerptChunk(_fit(tail, n)[None, :], last=True, decoded_seconds=total / rate)
    else:
        yield ExcerptChunk(np.zeros((0, n), np.float32), last=True, decoded_seconds=total / rate)


def _spaced_excerpts(
    path: str, rate: int, n: int, count: int, duration: float | None
) -> Iterator[ExcerptChunk] | None:
    """N windows by seeking; None when the container's duration cannot be trusted."""
    length = n / rate
    if not duration or duration <= length * count:
        return None  # short (or unknown) tracks: cheaper and exact to decode them whole
    # Containers can under-report (see DESIGN.md): audio beyond the claimed end means it lied.
    beyond = decode.read_windows(path, rate, [(duration + 1.0, 0.5)])[0]
    if np.any(beyond != 0):
        return None
    step = (duration - length) / count
    windows = [(step * (i + 0.5), length) for i in range(count)]
    excerpts = np.stack([_fit(w, n) for w in decode.read_windows(path, rate, windows)])
    return iter([ExcerptChunk(excerpts, last=True)])


def excerpts(
    path: str, rate: int, n: int, policy: ExcerptPolicy, duration: float | None
) -> Iterator[ExcerptChunk]:
    """Excerpt chunks for one track; the last chunk has `last=True`. Raises decode.DecodeError."""
    if policy.name == "spaced":
        spaced = _spaced_excerpts(path, rate, n, policy.count, duration)
        if spaced is not None:
            return spaced
    return _all_excerpts(path, rate, n)
