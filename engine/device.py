"""Where inference runs, and how many CPU threads it may take.

Analysis runs next to audio decoding (PyAV, its own thread) and, in the app, next to the GUI.
On a small machine the encoder must leave a core for decode: on the 2-core dev VM one intra-op
thread gave the same or better excerpts/s than two for the small CNNs (see
`bench/inference_bench.py`), because the convolutions are too small to split well and the second
core is busy decoding. So the default is half the cores, at least one, at most
`MAX_DEFAULT_THREADS`.
"""

from __future__ import annotations

import os

import torch

from .errors import MusicSSLError

DEVICE_ENV_VAR = "MUSICSSL_DEVICE"
THREADS_ENV_VAR = "MUSICSSL_THREADS"
MAX_DEFAULT_THREADS = 4
_CHOICES = ("auto", "cpu", "cuda", "mps")

_configured_threads: int | None = None


class DeviceUnavailableError(MusicSSLError, RuntimeError):
    """The requested accelerator is not usable in this process."""


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def select_device(preference: str = "auto") -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; `MUSICSSL_DEVICE` replaces `auto` (only `auto`).

    An explicit accelerator that is missing is an error rather than a silent CPU fallback: a user
    who asked for the GPU should learn why analysis is slow.
    """
    pref = (preference or "auto").strip().lower()
    if pref == "auto":
        env = os.environ.get(DEVICE_ENV_VAR, "").strip().lower()
        if env and env != "auto":
            try:
                return select_device(env)
            except ValueError as exc:
                raise ValueError(f"{DEVICE_ENV_VAR}: {exc}") from None
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")

    kind, _, index = pref.partition(":")
    if kind not in _CHOICES or (index and not index.isdigit()) or (index and kind != "cuda"):
        raise ValueError(
            f"unknown device {preference!r}; use one of {', '.join(_CHOICES)} (or cuda:N)"
        )
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            built = torch.backends.cuda.is_built()
            why = "no CUDA GPU/driver is visible" if built else "this torch build has no CUDA"
            raise DeviceUnavailableError(f"device 'cuda' requested but {why}; use 'cpu' or 'auto'")
        n = torch.cuda.device_count()
        if index and int(index) >= n:
            raise DeviceUnavailableError(f"device {pref!r} requested but only {n} CUDA device(s)")
        return torch.device(pref)
    if not _mps_available():
        raise DeviceUnavailableError(
            "device 'mps' requested but Apple Metal (MPS) is not available; use 'cpu' or 'auto'"
        )
    return torch.device("mps")


def default_cpu_threads() -> int:
    """Half the visible cores (decode and the GUI need the rest), between 1 and the cap."""
    env = os.environ.get(THREADS_ENV_VAR, "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"{THREADS_ENV_VAR} must be a positive integer, got {env!r}") from None
        if value < 1:
            raise ValueError(f"{THREADS_ENV_VAR} must be a positive integer, got {env!r}")
        return value
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_THREADS, cores // 2))


def configure_cpu_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads (and the count ONNX sessions use); returns what was set."""
    global _configured_threads
    threads = default_cpu_threads() if n is None else int(n)
    if threads < 1:
        raise ValueError(f"thread count must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    _configured_threads = threads
    return threads


def cpu_threads() -> int:
    """The configured count, or the default if `configure_cpu_threads` was never called."""
    return _configured_threads if _configured_threads is not None else default_cpu_threads()


__all__ = [
    "DEVICE_ENV_VAR",
    "THREADS_ENV_VAR",
    "DeviceUnavailableError",
    "configure_cpu_threads",
    "cpu_threads",
    "default_cpu_threads",
    "select_device",
]
