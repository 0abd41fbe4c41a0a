"""The hand-made excerpt statistics a bundle may weigh into its track vector next to h.

Each one hears something the learned encoder keeps poorly: key (engine/harmony.py) and groove
(engine/rhythm.py). A bundle gives each a weight (`<name>_weight` in its config, 0 = left out);
EmbeddingModel appends the statistics of the weighted ones to h in the order below, and standard-
ises each with buffers `<name>_mean` / `<name>_scale` fitted on training excerpts
(training/whitening.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .harmony import N_CLASSES, pitch_class_profile
from .rhythm import N_LAGS, onset_autocorrelation


@dataclass(frozen=True)
class Statistic:
    name: str
    dim: int
    measure: Callable[[torch.Tensor, int], torch.Tensor]  # excerpts (B, N), rate -> (B, dim)


STATISTICS = (
    Statistic("harmony", N_CLASSES, pitch_class_profile),
    Statistic("rhythm", N_LAGS, onset_autocorrelation),
)


def measure(statistics: Sequence[Statistic], x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Excerpts (B, N) -> (B, sum of dims): the statistics side by side, in the given order."""
    if not statistics:
        return x.new_zeros((x.shape[0], 0))
    return torch.cat([s.measure(x, sample_rate) for s in statistics], dim=-1)


__all__ = ["STATISTICS", "Statistic", "measure"]
