"""Inference backends: excerpts (B, N) float32 -> (h (B, D), tag probabilities (B, T)) as numpy.

Two backends compute the same function:
- "torch": the reference, on any device.
- "onnx": ONNX Runtime on CPU, several times faster than eager PyTorch for these small CNNs on
  one thread (numbers in `bench/inference_bench.py`). ONNX has no complex-valued STFT, so for
  log-mel encoders the front-end runs in torch (an FFT, cheap) and only the network after it is
  exported; the alternative "dft" front-end, the STFT written as a conv1d with a fixed DFT basis
  inside the graph, is kept as an option because it lets the whole model run in ONNX Runtime.

The exported graph is cached as `data_dir()/onnx-cache/<model_id>.onnx` and checked against the
torch model on a fixed probe batch every time a runner is made: a stale or wrong cache (new code,
a different exporter) is re-exported, and "auto" falls back to torch if the outputs still differ.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import paths
from .bundle import Bundle
from .device import cpu_threads, select_device
from .embedding_model import EmbeddingModel
from .encoders.melcnn import LogMel
from .errors import MusicSSLError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
ONNX_FRONTENDS = ("torch", "dft")
ONNX_OPSET = 17
# Bump when the exported graph's layout changes, so old cache files are re-exported.
EXPORT_VERSION = "1"
_EXPORT_META_KEY = "musicssl.export"
# Agreement required between ONNX Runtime and torch on the probe batch.
RTOL = 1e-3
ATOL_FRACTION = 1e-4  # of the largest |h|, so the check is scale-free
PROB_ATOL = 1e-4


class InferenceError(MusicSSLError, RuntimeError):
    """A backend could not be built or disagrees with the torch reference."""


class Runner:
    """Callable batch inference for one bundle; subclasses are one backend each."""

    backend: str = ""

    def __init__(self, bundle: Bundle, device: torch.device) -> None:
        self.bundle = bundle
        self.device = device
        self.model_id = bundle.model_id
        self.sample_rate = bundle.config.sample_rate
        self.excerpt_samples = bundle.config.excerpt_samples
        self.embedding_dim = bundle.config.embedding_dim
        self.n_tags = len(bundle.config.tags)
        self._min_samples = int(getattr(bundle.model.encoder, "min_samples", 1))

    def _check(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.ndim != 2:
            raise ValueError(f"expected a (batch, samples) array, got shape {batch.shape}")
        if batch.shape[1] < self._min_samples:
            raise ValueError(
                f"excerpts of {batch.shape[1]} samples are shorter than the model accepts "
                f"({self._min_samples}); pad them"
            )
        return np.ascontiguousarray(batch, dtype=np.float32)

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.bundle.name} {self.model_id} on {self.device}>"


class TorchRunner(Runner):
    """The reference backend. The bundle's model is moved to `device` (not copied)."""

    backend = "torch"

    def __init__(self, bundle: Bundle, device: torch.device) -> None:
        super().__init__(bundle, device)
        self.model = bundle.model.to(device).eval()

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(self._check(batch))
        with torch.inference_mode():
            h, probs = self.model(x.to(self.device))
        return h.float().cpu().numpy(), probs.float().cpu().numpy()


# ---------------------------------------------------------------------------------------------
# ONNX


class DftLogMel(nn.Module):
    """LogMel with the STFT as a strided conv1d over a windowed DFT basis (exportable to ONNX).

    Costs n_fft * (n_fft + 2) multiply-adds per frame instead of an FFT's n_fft * log n_fft, which
    is why the torch front-end is the default; it reproduces LogMel's centred, reflect-padded,
    Hann-windowed power STFT.
    """

    def __init__(self, logmel: LogMel) -> None:
        super().__init__()
        n_fft = logmel.n_fft
        n_freq = n_fft // 2 + 1
        t = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(n_freq, dtype=torch.float64)[:, None]
        angle = 2 * torch.pi * k * t / n_fft
        window = logmel.window.detach().to(torch.float64)
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window
        self.register_buffer("basis", basis.to(torch.float32).unsqueeze(1), persistent=False)
        self.n_fft = n_fft
        self.n_freq = n_freq
        self.hop = logmel.hop_length
        self.logmel = logmel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.n_fft // 2
        frames = F.conv1d(
            F.pad(x.unsqueeze(1), (pad, pad), mode="reflect"), self.basis, stride=self.hop
        )
        power = frames[:, : self.n_freq].pow(2) + frames[:, self.n_freq :].pow(2)
        return self.logmel.compress(power)


class _ExportWrapper(nn.Module):
    """What goes into the ONNX graph: optional front-end, network, tag head (if any tags)."""

    def __init__(self, model: EmbeddingModel, frontend: nn.Module | None) -> None:
        super().__init__()
        self.model = model
        self.frontend = frontend

    def forward(self, x: torch.Tensor) -> Any:
        features = self.frontend(x) if self.frontend is not None else x
        h = self.model.encoder.forward_features(features)
        if self.model.n_tags == 0:
            return h
        return h, self.model.tag_probs(h)


def onnx_cache_dir() -> Path:
    return paths.data_dir() / "onnx-cache"


def _probe_batch(bundle: Bundle) -> np.ndarray:
    """Fixed, music-scaled noise: two excerpts so batch-dependence (BN in train mode) shows up."""
    rng = np.random.default_rng(1234)
    n = bundle.config.excerpt_samples
    return (0.1 * rng.standard_normal((2, n))).astype(np.float32)


class OnnxRunner(Runner):
    """ONNX Runtime on the CPU execution provider, checked against torch when built."""

    backend = "onnx"

    def __init__(
        self,
        bundle: Bundle,
        *,
        threads: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        frontend: str = "torch",
    ) -> None:
        super().__init__(bundle, torch.device("cpu"))
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise InferenceError(f"onnxruntime is not installed: {exc}") from None
        if frontend not in ONNX_FRONTENDS:
            raise ValueError(f"unknown ONNX front-end {frontend!r}; use one of {ONNX_FRONTENDS}")
        self._ort = ort
        self.threads = int(threads or cpu_threads())
        self.model = bundle.model.to("cpu").eval()
        encoder = self.model.encoder
        if getattr(encoder, "frontend_exportable", False):
            self.frontend_name = "graph"
            self._torch_frontend: nn.Module | None = None
            graph_frontend: nn.Module | None = encoder.frontend
        elif frontend == "dft":
            if not isinstance(encoder.frontend, LogMel):
                raise InferenceError(f"no DFT front-end for {type(encoder.frontend).__name__}")
            self.frontend_name = "dft"
            self._torch_frontend = None
            graph_frontend = DftLogMel(encoder.frontend).eval()
        else:
            self.frontend_name = "torch"
            self._torch_frontend = encoder.frontend
            graph_frontend = None
        suffix = "" if self.frontend_name != "dft" else "-dft"
        cache = Path(cache_dir) if cache_dir is not None else onnx_cache_dir()
        self.onnx_path = cache / f"{bundle.model_id}{suffix}.onnx"
        self._wrapper = _ExportWrapper(self.model, graph_frontend).eval()
        self._export_tag = f"{EXPORT_VERSION}/{self.frontend_name}/torch-{torch.__version__}"

        reference = TorchRunner(bundle, torch.device("cpu"))(_probe_batch(bundle))
        exported = False
        if not self._open_cached():
            self._export()
            exported = True
            self._open_session()
        problem = self._compare(reference)
        if problem and not exported:
            log.info("cached ONNX graph %s is stale (%s); re-exporting", self.onnx_path, problem)
            self._export()
            self._open_session()
            problem = self._compare(reference)
        if problem:
            raise InferenceError(f"{self.onnx_path}: ONNX output differs from torch: {problem}")

    def _open_cached(self) -> bool:
        """Open the cached graph if this code and torch exported it (else: export it again).

        The export tag is read back through ONNX Runtime, not the `onnx` package: importing
        that costs ~1.4 s, most of it holding the GIL (ml_dtypes), on every analysis start.
        """
        if not self.onnx_path.exists():
            return False
        try:
            self._open_session()
        except InferenceError:  # a truncated or foreign file
            return False
        meta = self._session.get_modelmeta().custom_metadata_map
        return meta.get(_EXPORT_META_KEY) == self._export_tag

    def _export(self) -> None:
        import onnx

        self.onnx_path.parent.mkdir(parents=True, exist_ok=True)
        x = torch.from_numpy(_probe_batch(self.bundle))
        if self._torch_frontend is not None:
            with torch.inference_mode():
                x = self._torch_frontend(x)
            x = x.clone()  # inference tensors cannot be traced
        time_axis = x.dim() - 1
        outputs = ["h"] if self.n_tags == 0 else ["h", "probs"]
        dynamic_axes = {"input": {0: "batch", time_axis: "time"}}
        dynamic_axes.update({name: {0: "batch"} for name in outputs})
        fd, tmp = tempfile.mkstemp(dir=self.onnx_path.parent, suffix=".onnx.tmp")
        os.close(fd)
        try:
            with warnings.catch_warnings():
                # The TorchScript exporter is deprecated but needs no onnxscript, and it handles
                # these plain CNNs; the probe comparison guards its output.
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    self._wrapper,
                    (x,),
                    tmp,
                    dynamo=False,
                    opset_version=ONNX_OPSET,
                    input_names=["input"],
                    output_names=outputs,
                    dynamic_axes=dynamic_axes,
                    do_constant_folding=True,
                )
            # The exporter re-applies the wrapper's original train/eval mode; keep it eval.
            self._wrapper.eval()
            graph = onnx.load(tmp)
            entry = graph.metadata_props.add()
            entry.key, entry.value = _EXPORT_META_KEY, self._export_tag
            entry = graph.metadata_props.add()
            entry.key, entry.value = "musicssl.model_id", self.model_id
            onnx.save(graph, tmp)
            os.replace(tmp, self.onnx_path)
        except Exception as exc:
            raise InferenceError(f"ONNX export of {self.bundle.name} failed: {exc}") from exc
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _open_session(self) -> None:
        options = self._ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ORT workers busy-wait by default, taking CPU from the decode threads beside them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = self._ort.InferenceSession(
                str(self.onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise InferenceError(f"{self.onnx_path}: ONNX Runtime cannot load it: {exc}") from exc

    def _compare(self, reference: tuple[np.ndarray, np.ndarray]) -> str | None:
        try:
            h, probs = self(_probe_batch(self.bundle))
        except Exception as exc:
            return f"running it failed: {exc}"
        h_ref, p_ref = reference
        if h.shape != h_ref.shape or probs.shape != p_ref.shape:
            return f"shapes {h.shape}/{probs.shape} vs {h_ref.shape}/{p_ref.shape}"
        atol = ATOL_FRACTION * max(1.0, float(np.abs(h_ref).max()))
        if not np.allclose(h, h_ref, rtol=RTOL, atol=atol):
            return f"max |dh| = {float(np.abs(h - h_ref).max()):.3g}"
        if probs.size and not np.allclose(probs, p_ref, rtol=0, atol=PROB_ATOL):
            return f"max |dprob| = {float(np.abs(probs - p_ref).max()):.3g}"
        return None

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self._check(batch)
        if self._torch_frontend is not None:
            with torch.inference_mode():
                x = self._torch_frontend(torch.from_numpy(x)).numpy()
        outputs = self._session.run(None, {"input": x})
        h = outputs[0]
        probs = outputs[1] if len(outputs) > 1 else np.zeros((h.shape[0], 0), np.float32)
        return h, probs


def make_runner(
    bundle: Bundle,
    device: torch.device | str | None = None,
    backend: str = "auto",
    *,
    threads: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Runner:
    """Pick a backend: "auto" = ONNX Runtime on CPU when it imports and matches torch, else torch.

    On CUDA/MPS "auto" means torch (the ORT CPU provider would leave the GPU idle). An explicit
    "onnx" that cannot be built raises `InferenceError` instead of falling back silently.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown inference backend {backend!r}; use one of {BACKENDS}")
    if device is None or isinstance(device, str):
        device = select_device(device or "auto")
    if backend == "torch":
        return TorchRunner(bundle, device)
    if device.type != "cpu":
        if backend == "onnx":
            raise ValueError(f"the onnx backend runs on CPU only, not {device}")
        return TorchRunner(bundle, device)
    if backend == "onnx":
        return OnnxRunner(bundle, threads=threads, cache_dir=cache_dir)
    try:
        return OnnxRunner(bundle, threads=threads, cache_dir=cache_dir)
    except InferenceError as exc:
        log.warning("ONNX backend unavailable, using torch: %s", exc)
        return TorchRunner(bundle, device)


__all__ = [
    "BACKENDS",
    "DftLogMel",
    "InferenceError",
    "OnnxRunner",
    "Runner",
    "TorchRunner",
    "make_runner",
    "onnx_cache_dir",
]
