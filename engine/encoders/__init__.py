"""Encoder architectures the engine and training share, looked up by the name a bundle records.

A bundle stores an architecture name plus its hyper-parameters, never code: loading builds the
network from this registry and fills in the weights. A bundle that names an architecture this build
does not know fails at load time instead of running the wrong network.

Every encoder maps mono waveform excerpts `(B, N)` float32 at its sample rate to `h (B, D)` and is
split in two stages, `frontend` (waveform -> features, fixed signal processing) and `body`
(features -> h, learned), so an inference backend that cannot export the front-end (ONNX has no
complex STFT) can still run the body.

The contract every registered encoder keeps (the bundle, engine and training rely on it):
keyword-only constructor taking `sample_rate`, `embedding_dim` and its own hyper-parameters;
attributes `sample_rate`, `embedding_dim`, `default_excerpt_samples`, `min_samples`,
`frontend_exportable`; modules `frontend`; methods `forward_features(features) -> h` and
`arch_params()` (every constructor argument except sample_rate/embedding_dim, JSON-able).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..errors import MusicSSLError
from .melcnn import MelCNN
from .samplecnn import SampleCNN

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "samplecnn": SampleCNN,
    "melcnn": MelCNN,
}


class UnknownArchitectureError(MusicSSLError, KeyError):
    """The requested architecture is not in this build's registry."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


def build_encoder(name: str, **params: object) -> nn.Module:
    """Instantiate a registered encoder; an unknown name raises with the valid choices."""
    try:
        factory = ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise UnknownArchitectureError(
            f"unknown encoder architecture {name!r} (known: {known})"
        ) from None
    return factory(**params)


__all__ = ["ARCHITECTURES", "MelCNN", "SampleCNN", "UnknownArchitectureError", "build_encoder"]
