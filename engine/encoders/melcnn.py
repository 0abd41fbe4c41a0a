"""A compact log-mel CNN sized for CPU analysis of a whole library.

Why this shape: a 3 s log-mel patch (96 bands, hop 512 -> 130 frames) through five conv3x3 blocks
that halve both axes keeps ~60 M multiply-adds per excerpt, so one CPU thread analyses well over
100 excerpts/s, while mean+max pooling keeps the output independent of excerpt length. The
front-end is fixed signal processing (STFT, torchaudio mel filterbank, log1p
compression as musicnn does); everything learned lives in `body`, which exports to ONNX on its own.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torchaudio
from torch import nn

DEFAULT_CHANNELS: tuple[int, ...] = (16, 32, 64, 128, 256)
DEFAULT_EXCERPT_SECONDS = 3.0
# "global": mean+max over frequency and time, so a pattern gives (nearly) the same features
# wherever it sits in the spectrum. "time": over time only, one pair per remaining band, so the
# features keep where a pattern sits (register, spectral envelope) -- what tells apart two tracks
# of one soundtrack that share a palette.
POOLING_MODES = ("global", "time")


@functools.lru_cache(maxsize=16)
def _mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None
) -> torch.Tensor:
    # Building the filterbank costs tens of ms; bundles, tests and training build many encoders.
    return torchaudio.functional.melscale_fbanks(
        n_freqs=n_fft // 2 + 1,
        f_min=f_min,
        f_max=f_max if f_max is not None else sample_rate / 2,
        n_mels=n_mels,
        sample_rate=sample_rate,
        norm=None,
        mel_scale="htk",
    )


class LogMel(nn.Module):
    """Waveform (B, N) -> log-compressed mel power spectrogram (B, 1, n_mels, frames).

    The same centred, reflect-padded, Hann-windowed power STFT and HTK filterbank as
    torchaudio's MelSpectrogram defaults, with the window and filterbank as non-persistent
    buffers: they are fixed signal processing, so they stay out of the weights file (the bundle
    records the parameters that define them instead).

    log1p(c * mel) instead of decibels: amplitude_to_DB's top_db clamp depends on the loudest bin
    of the input, which would make an excerpt's features depend on its neighbours in a batch.
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int,
        hop_length: int,
        n_mels: int,
        f_min: float,
        f_max: float | None,
        log_compression: float,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.log_compression = float(log_compression)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        fb = _mel_filterbank(sample_rate, n_fft, n_mels, float(f_min), f_max)
        self.register_buffer("fb", fb.clone(), persistent=False)

    def power_spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            x,
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        return torch.view_as_real(spec).pow(2).sum(-1)

    def compress(self, power: torch.Tensor) -> torch.Tensor:
        """(B, freq, frames) power -> (B, 1, n_mels, frames); shared with the ONNX DFT front-end."""
        mel = torch.matmul(power.transpose(-1, -2), self.fb).transpose(-1, -2)
        return torch.log1p(self.log_compression * mel).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.compress(self.power_spectrogram(x))


class MelCNN(nn.Module):
    """Log-mel CNN encoder; `channels` sets both the depth (one block per entry) and the widths."""

    frontend_exportable = False  # ONNX has no complex STFT; the runner computes LogMel in torch

    def __init__(
        self,
        *,
        sample_rate: int = 22050,
        embedding_dim: int = 256,
        channels: Sequence[int] = DEFAULT_CHANNELS,
        n_mels: int = 96,
        n_fft: int = 1024,
        hop_length: int = 512,
        f_min: float = 0.0,
        f_max: float | None = None,
        log_compression: float = 10000.0,
        pooling: str = "global",
    ) -> None:
        super().__init__()
        if pooling not in POOLING_MODES:
            raise ValueError(f"MelCNN pooling must be one of {POOLING_MODES}, got {pooling!r}")
        channels = [int(c) for c in channels]
        if not channels or any(c <= 0 for c in channels):
            raise ValueError(f"MelCNN needs >= 1 positive channel width, got {channels}")
        if n_mels < 2 or n_fft < 16 or hop_length < 1:
            raise ValueError(
                f"MelCNN: bad front-end n_mels={n_mels} n_fft={n_fft} hop={hop_length}"
            )
        self.sample_rate = int(sample_rate)
        self.embedding_dim = int(embedding_dim)
        self.channels = tuple(channels)
        self.default_excerpt_samples = round(DEFAULT_EXCERPT_SECONDS * self.sample_rate)
        # Reflect padding needs more than n_fft // 2 samples; below one window the mel is noise.
        self.min_samples = n_fft

        self._arch_params = {
            "channels": list(self.channels),
            "n_mels": int(n_mels),
            "n_fft": int(n_fft),
            "hop_length": int(hop_length),
            "f_min": float(f_min),
            "f_max": None if f_max is None else float(f_max),
            "log_compression": float(log_compression),
        }
        if pooling != "global":
            # Absent means "global", so bundles made before this option load unchanged.
            self._arch_params["pooling"] = pooling
        self.pooling = pooling
        self.frontend = LogMel(
            self.sample_rate, n_fft, hop_length, n_mels, f_min, f_max, log_compression
        )
        # An input BatchNorm learns the offset/scale of the log-mel values during training; at
        # random init (eval mode) it is the identity, which keeps the untrained baseline simple.
        layers: list[nn.Module] = [nn.BatchNorm2d(1)]
        c_in = 1
        for c_out in channels:
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                # ceil_mode lets deeper plans run on short/narrow inputs instead of reaching size 0.
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        # Mean pooling summarises texture, max pooling keeps short salient events; both are cheap.
        bands = n_mels
        for _ in channels:
            bands = -(-bands // 2)  # ceil_mode pooling
        self.proj = nn.Linear(2 * c_in * (bands if pooling == "time" else 1), self.embedding_dim)

    def arch_params(self) -> dict[str, object]:
        """Every hyper-parameter besides sample_rate/embedding_dim, for a self-describing bundle."""
        return dict(self._arch_params)

    def forward_features(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 1, n_mels, frames) -> h (B, D)."""
        y = self.body(features)
        y = y.flatten(1, 2) if self.pooling == "time" else y.flatten(2)
        pooled = torch.cat([y.mean(dim=-1), y.amax(dim=-1)], dim=1)
        return self.proj(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(self.frontend(x))
