"""SampleCNN: a raw-waveform encoder of stacked length-3 convolutions (Lee et al. 2017; CLMR 2021).

The "3^9" model reads 59049 samples (about 2.7 s at 22.05 kHz): a strided length-3 convolution
splits the waveform into 19683 frames of 3 samples, then nine blocks of conv3 + BN + ReLU + maxpool3
shrink time by 3 each down to a single step, and a last convolution maps to the embedding width.
It is the encoder CLMR used for contrastive pre-training, kept so such weights can be fine-tuned
and served here; it is ~15x more compute per second of audio than the mel CNN, so it is not the
CPU default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# Lee et al.'s 3^9 model: 128 for the strided front and the first two blocks, 256 for the next six,
# 512 for the ninth; the final convolution then maps 512 -> embedding_dim.
CLMR_CHANNELS: tuple[int, ...] = (128, 128, 128, 256, 256, 256, 256, 256, 256, 512)


class _AddChannelAxis(nn.Module):
    """(B, N) -> (B, 1, N); a module so every encoder has the same front-end/body split."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1)


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int) -> list[nn.Module]:
    # Padding keeps length for the stride-1 convolutions so each maxpool3 divides time exactly by 3.
    padding = (kernel - 1) // 2 if stride == 1 else 0
    return [
        nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm1d(c_out),
        nn.ReLU(inplace=True),
    ]


class SampleCNN(nn.Module):
    """Raw-waveform SampleCNN; `channels` = strided front width followed by one width per block.

    The number of blocks is `len(channels) - 1`, so the natural excerpt is 3 ** len(channels)
    samples (59049 for the CLMR plan). Longer excerpts work too: the remaining time steps are
    averaged. The default final kernel is 1 because after nine pools only one time step is left
    (a length-3 kernel with zero padding would only ever use its centre tap).
    """

    frontend_exportable = True

    def __init__(
        self,
        *,
        sample_rate: int = 22050,
        embedding_dim: int = 512,
        channels: Sequence[int] = CLMR_CHANNELS,
        final_kernel: int = 1,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) < 2 or any(c <= 0 for c in channels):
            raise ValueError(f"SampleCNN needs >= 2 positive channel widths, got {channels}")
        if final_kernel < 1 or final_kernel % 2 == 0:
            raise ValueError(f"SampleCNN final_kernel must be odd and >= 1, got {final_kernel}")
        self.sample_rate = int(sample_rate)
        self.embedding_dim = int(embedding_dim)
        self.channels = tuple(channels)
        n_blocks = len(channels) - 1
        self.default_excerpt_samples = 3 ** (n_blocks + 1)
        self.min_samples = self.default_excerpt_samples

        self.frontend = _AddChannelAxis()
        self._arch_params = {"channels": list(self.channels), "final_kernel": int(final_kernel)}
        layers: list[nn.Module] = _conv_bn_relu(1, channels[0], kernel=3, stride=3)
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            layers += _conv_bn_relu(c_in, c_out, kernel=3, stride=1)
            layers.append(nn.MaxPool1d(3, stride=3))
        layers += _conv_bn_relu(channels[-1], self.embedding_dim, kernel=final_kernel, stride=1)
        self.body = nn.Sequential(*layers)

    def arch_params(self) -> dict[str, object]:
        """Every hyper-parameter besides sample_rate/embedding_dim, for a self-describing bundle."""
        return dict(self._arch_params)

    def forward_features(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 1, N) -> h (B, D): the learned part, global mean over what is left of time."""
        return self.body(features).mean(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(self.frontend(x))
