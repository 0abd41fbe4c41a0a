"""Device selection and inference backends: ONNX Runtime must agree with the torch reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from musicssl.engine import device as devmod
from musicssl.engine import inference
from musicssl.engine.bundle import build_model, default_config, load_bundle, save_bundle
from musicssl.engine.inference import InferenceError, OnnxRunner, TorchRunner, make_runner
from musicssl.engine.paths import data_dir

pytest.importorskip("onnxruntime")

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


# --- device -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_device_env(monkeypatch):
    monkeypatch.delenv(devmod.DEVICE_ENV_VAR, raising=False)
    monkeypatch.delenv(devmod.THREADS_ENV_VAR, raising=False)


@NO_CUDA
def test_auto_device_is_cpu_here():
    expected = "mps" if devmod._mps_available() else "cpu"
    assert devmod.select_device().type == expected
    assert devmod.select_device("cpu") == torch.device("cpu")


@NO_CUDA
def test_cuda_request_fails_clearly():
    with pytest.raises(devmod.DeviceUnavailableError, match="'cuda' requested.*use 'cpu'"):
        devmod.select_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        devmod.select_device("tpu")


@NO_CUDA
def test_env_var_overrides_auto_only(monkeypatch):
    monkeypatch.setenv(devmod.DEVICE_ENV_VAR, "cpu")
    assert devmod.select_device("auto").type == "cpu"
    monkeypatch.setenv(devmod.DEVICE_ENV_VAR, "cuda")
    with pytest.raises(devmod.DeviceUnavailableError):
        devmod.select_device("auto")
    assert devmod.select_device("cpu").type == "cpu"  # explicit choice wins over the env
    monkeypatch.setenv(devmod.DEVICE_ENV_VAR, "gpu")
    with pytest.raises(ValueError, match=devmod.DEVICE_ENV_VAR):
        devmod.select_device()


def test_cpu_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert devmod.configure_cpu_threads(1) == 1
        assert torch.get_num_threads() == 1 and devmod.cpu_threads() == 1
        monkeypatch.setenv(devmod.THREADS_ENV_VAR, "3")
        assert devmod.default_cpu_threads() == 3
        monkeypatch.setenv(devmod.THREADS_ENV_VAR, "0")
        with pytest.raises(ValueError):
            devmod.default_cpu_threads()
        monkeypatch.delenv(devmod.THREADS_ENV_VAR)
        assert 1 <= devmod.default_cpu_threads() <= devmod.MAX_DEFAULT_THREADS
        with pytest.raises(ValueError):
            devmod.configure_cpu_threads(0)
    finally:
        torch.set_num_threads(before)
        devmod._configured_threads = None


# --- runners ----------------------------------------------------------------------------------

SPECS = {
    "melcnn-tags": ("melcnn", {"channels": [4, 8, 16]}, ["rock", "jazz", "calm"]),
    "melcnn-notags": ("melcnn", {"channels": [4, 8]}, []),
    "samplecnn": ("samplecnn", {"channels": [4, 4, 4, 8, 8, 8, 8, 8, 8, 16]}, ["x"]),
}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for key, (arch, params, tags) in SPECS.items():
        config = default_config(key, arch, params, embedding_dim=24, tags=tags)
        torch.manual_seed(7)
        model = build_model(config)
        for module in model.modules():  # non-trivial BN statistics
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        save_bundle(model, config, root / key)
        out[key] = root / key
    return out


def batch(n_samples: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / 22050
    tones = np.sin(2 * np.pi * rng.uniform(100, 2000, (size, 1)) * t)
    return (0.3 * tones + 0.05 * rng.standard_normal((size, n_samples))).astype(np.float32)


@pytest.mark.parametrize(
    "key,frontend",
    [
        ("melcnn-tags", "torch"),
        ("melcnn-tags", "dft"),
        ("melcnn-notags", "torch"),
        ("samplecnn", "torch"),
    ],  # the waveform encoder exports whole; no front-end choice
)
def test_onnx_matches_torch(bundles, key, frontend):
    bundle = load_bundle(bundles[key])
    reference = TorchRunner(bundle, torch.device("cpu"))
    runner = OnnxRunner(bundle, threads=1, frontend=frontend)
    expected_name = "graph" if key == "samplecnn" else frontend
    assert runner.frontend_name == expected_name
    n = bundle.config.excerpt_samples
    for size in (1, 5):  # the batch axis is dynamic
        x = batch(n, size, seed=size)
        h, probs = runner(x)
        h_ref, p_ref = reference(x)
        assert h.dtype == np.float32 and h.shape == (size, 24)
        assert probs.shape == (size, len(bundle.config.tags))
        scale = np.abs(h_ref).max()
        np.testing.assert_allclose(h, h_ref, rtol=1e-3, atol=1e-4 * scale)
        np.testing.assert_allclose(probs, p_ref, atol=1e-4)
        assert ((probs >= 0) & (probs <= 1)).all()


def test_onnx_cache_is_reused_and_repaired(bundles):
    bundle = load_bundle(bundles["melcnn-tags"])
    first = OnnxRunner(bundle, threads=1)
    path = data_dir() / "onnx-cache" / f"{bundle.model_id}.onnx"
    assert first.onnx_path == path and path.exists()
    stamp = path.stat().st_mtime_ns
    OnnxRunner(bundle, threads=1)
    assert path.stat().st_mtime_ns == stamp  # reused, not re-exported
    path.write_bytes(b"garbage from a crashed write")
    repaired = OnnxRunner(bundle, threads=1)
    x = batch(bundle.config.excerpt_samples, 2)
    np.testing.assert_allclose(
        repaired(x)[0], TorchRunner(bundle, torch.device("cpu"))(x)[0], rtol=1e-3, atol=1e-4
    )


def test_stale_cache_with_other_weights_is_replaced(bundles):
    """A cache file that loads fine but computes something else is caught by the probe check."""
    good = load_bundle(bundles["melcnn-tags"])
    path = OnnxRunner(good, threads=1).onnx_path
    other = load_bundle(bundles["melcnn-tags"])
    with torch.no_grad():
        other.model.encoder.proj.weight.mul_(-1.0)  # same shapes, different function
    other.model_id = good.model_id + "x"
    wrong = OnnxRunner(other, threads=1)  # exports other's graph under a new id
    wrong.onnx_path.replace(path)  # ... and we plant it as good's cache
    runner = OnnxRunner(good, threads=1)
    x = batch(good.config.excerpt_samples, 2)
    np.testing.assert_allclose(
        runner(x)[0], TorchRunner(good, torch.device("cpu"))(x)[0], rtol=1e-3, atol=1e-4
    )


def test_make_runner_backends(bundles, monkeypatch):
    bundle = load_bundle(bundles["melcnn-tags"])
    assert isinstance(make_runner(bundle, "cpu", "torch"), TorchRunner)
    assert isinstance(make_runner(bundle, "cpu", "onnx"), OnnxRunner)
    auto = make_runner(bundle, torch.device("cpu"))
    assert auto.backend == "onnx"
    with pytest.raises(ValueError, match="unknown inference backend"):
        make_runner(bundle, "cpu", "tensorrt")

    def broken(*args, **kwargs):
        raise InferenceError("simulated export failure")

    monkeypatch.setattr(inference, "OnnxRunner", broken)
    assert make_runner(bundle, "cpu", "auto").backend == "torch"
    with pytest.raises(InferenceError, match="simulated"):
        make_runner(bundle, "cpu", "onnx")


def test_runner_rejects_bad_input(bundles):
    bundle = load_bundle(bundles["melcnn-notags"])
    runner = TorchRunner(bundle, torch.device("cpu"))
    with pytest.raises(ValueError, match="batch, samples"):
        runner(np.zeros(22050, np.float32))
    with pytest.raises(ValueError, match="shorter"):
        runner(np.zeros((2, 100), np.float32))
    h, probs = runner(np.zeros((2, 22050), np.float64))  # other lengths and dtypes are fine
    assert h.shape == (2, 24) and probs.shape == (2, 0)
