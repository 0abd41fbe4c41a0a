"""Pitch-class profile of an excerpt: how much of its energy falls on each of the 12 semitones.

The learned encoder hears timbre and texture well but harmony poorly (a 96-band mel spectrogram
blurs neighbouring semitones below ~500 Hz, and none of its objectives asks for key). Yet the key
and chord vocabulary are what the two halves of one piece share when a composer keeps the same
orchestra for a whole soundtrack: on the corpus's validation soundtracks, adding this profile
to the track vector raised first-half → second-half identification from 0.835 to 0.922
(docs/MODEL_CARD.md, v6). A bundle opts in with `harmony_weight` (EmbeddingModel.similarity).

Written here with torch.stft rather than taken from a library: torchaudio 2.9 removed its
prototype chroma transform, and librosa (numba, scipy, soundfile) would be a large dependency for
a 12-row filter bank. The profile is deliberately plain — a semitone filter bank over a long
STFT, per-frame normalisation, log compression, mean over frames: about 2.5 ms per 3 s excerpt
on one CPU thread (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import functools
import math

import torch

N_CLASSES = 12
FMIN = 55.0  # A1: lower bass notes are less than a bin apart and smear rather than tell keys
FMAX = 2000.0  # above, energy is mostly overtones and percussion
WINDOW_SECONDS = 0.186  # 4096 samples at 22.05 kHz: 5.4 Hz bins, a bin per semitone from ~90 Hz
COMPRESSION = 120.0  # log1p(120 · share): a class holding 1/12 of a frame's energy maps to ~2.4


@functools.lru_cache(maxsize=8)
def _filter_bank(sample_rate: int, n_fft: int) -> tuple[slice, torch.Tensor]:
    """The STFT bins from FMIN to FMAX, and a (12, bins) matrix with 1 where a bin's nearest
    semitone is that pitch class (A = 0)."""
    freqs = torch.fft.rfftfreq(n_fft, 1.0 / sample_rate, dtype=torch.float64)
    keep = torch.nonzero((freqs >= FMIN) & (freqs <= min(FMAX, sample_rate / 2))).squeeze(1)
    bins = slice(int(keep[0]), int(keep[-1]) + 1)
    semitone = torch.round(12 * torch.log2(freqs[bins] / 440.0)).long() % N_CLASSES
    bank = torch.zeros(N_CLASSES, bins.stop - bins.start)
    bank[semitone, torch.arange(bank.shape[1])] = 1.0
    return bins, bank


def n_fft_for(sample_rate: int) -> int:
    """The power of two nearest to WINDOW_SECONDS at this rate (4096 at 22.05 kHz)."""
    return 2 ** round(math.log2(WINDOW_SECONDS * sample_rate))


def pitch_class_profile(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Waveform excerpts (B, N) -> (B, 12) mean log-compressed pitch-class energy shares.

    Each frame's 12 energies are divided by their sum before compression, so loudness does not
    enter; a silent frame contributes zeros.
    """
    if x.ndim != 2:
        raise ValueError(f"expected (batch, samples) excerpts, got shape {tuple(x.shape)}")
    n_fft = n_fft_for(int(sample_rate))
    x = x.float()
    if x.shape[1] < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.shape[1]))
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(x, n_fft, hop_length=n_fft // 4, window=window, return_complex=True)
    bins, bank = _filter_bank(int(sample_rate), n_fft)
    # Only the ~360 bins in range (of 2049 at 22 kHz): squaring all of them cost as much as the FFT.
    power = torch.view_as_real(spec[:, bins]).square().sum(dim=-1)
    energy = torch.einsum("cf,bft->bct", bank.to(x.device), power)
    share = energy / (energy.sum(dim=1, keepdim=True) + 1e-9)
    return torch.log1p(COMPRESSION * share).mean(dim=-1)


__all__ = ["N_CLASSES", "n_fft_for", "pitch_class_profile"]
