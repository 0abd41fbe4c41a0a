"""Throughput of the inference backends per encoder and batch size, on CPU.

Prints a Markdown table (excerpts/s and multiples of real time) plus the exact command line, so
numbers in docs and commit messages can be reproduced. Models are random-init bundles with the
architectures' default sizes: throughput does not depend on the weights.

    python bench/inference_bench.py                      # both encoders, 1 thread
    python bench/inference_bench.py --threads 1 2 --encoders melcnn --batch-sizes 8 32
    python bench/inference_bench.py --threads 1 2 --background-load 1   # a core busy "decoding"
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from musicssl.engine.bundle import build_model, default_config, load_bundle, save_bundle
from musicssl.engine.device import configure_cpu_threads
from musicssl.engine.inference import OnnxRunner, TorchRunner

BACKENDS = ("eager", "onnx", "onnx-dft", "compile")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _throughput(
    fn: Callable[[np.ndarray], object], batch: np.ndarray, seconds: float, repeats: int
) -> float:
    """Median excerpts/s over `repeats` windows of at least `seconds` and 2 calls each."""
    rates = []
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn(batch)
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds and calls >= 2:
                break
        rates.append(calls * batch.shape[0] / elapsed)
    return statistics.median(rates)


def _spin(stop) -> None:
    """Stand-in for the decode thread: keeps one core busy until told to stop."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def _compiled_runner(bundle) -> Callable[[np.ndarray], object]:
    model = torch.compile(bundle.model.eval(), mode="max-autotune-no-cudagraphs", dynamic=False)

    def run(batch: np.ndarray):
        with torch.inference_mode():
            return model(torch.from_numpy(batch))

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=["melcnn", "samplecnn"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--seconds", type=float, default=1.5, help="per timing window")
    parser.add_argument("--repeats", type=int, default=3, help="timing windows (median taken)")
    parser.add_argument(
        "--background-load",
        type=int,
        default=0,
        metavar="N",
        help="busy-loop processes running meanwhile (simulates decode on the other cores)",
    )
    args = parser.parse_args(argv)

    stop = multiprocessing.Event()
    spinners = [
        multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
        for _ in range(args.background_load)
    ]
    for proc in spinners:
        proc.start()
    try:
        rows = _run(args)
    finally:
        stop.set()
        for proc in spinners:
            proc.join(timeout=5)
    _print_table(rows, args)
    return 0


def _run(args: argparse.Namespace) -> list[tuple]:

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.encoders:
            config = default_config(f"bench-{name}", name, tags=[f"tag{i}" for i in range(50)])
            torch.manual_seed(0)
            folder = Path(tmp) / name
            save_bundle(build_model(config), config, folder)
            seconds_per_excerpt = config.excerpt_samples / config.sample_rate
            n_params = sum(p.numel() for p in build_model(config).parameters())
            for threads in args.threads:
                configure_cpu_threads(threads)
                for backend in args.backends:
                    bundle = load_bundle(folder)
                    start = time.perf_counter()
                    try:
                        if backend == "eager":
                            run = TorchRunner(bundle, torch.device("cpu"))
                        elif backend == "compile":
                            run = _compiled_runner(bundle)
                        else:
                            frontend = "dft" if backend == "onnx-dft" else "torch"
                            if frontend == "dft" and name != "melcnn":
                                continue  # the waveform encoder's graph already has its front-end
                            run = OnnxRunner(
                                bundle,
                                threads=threads,
                                cache_dir=Path(tmp) / "onnx",
                                frontend=frontend,
                            )
                    except Exception as exc:  # a backend that cannot be built is reported
                        print(f"{name}/{backend}: unavailable: {exc}", file=sys.stderr)
                        continue
                    setup = time.perf_counter() - start
                    rng = np.random.default_rng(0)
                    for batch_size in args.batch_sizes:
                        batch = (
                            0.1 * rng.standard_normal((batch_size, config.excerpt_samples))
                        ).astype(np.float32)
                        try:
                            t0 = time.perf_counter()
                            run(batch)  # torch.compile compiles per shape here
                            first = setup + time.perf_counter() - t0
                            rate = _throughput(run, batch, args.seconds, args.repeats)
                        except Exception as exc:
                            print(
                                f"{name}/{backend}/B={batch_size}: failed: {exc}", file=sys.stderr
                            )
                            continue
                        rows.append(
                            (
                                name,
                                f"{n_params / 1e6:.2f}M",
                                backend,
                                threads,
                                batch_size,
                                rate,
                                rate * seconds_per_excerpt,
                                first,
                            )
                        )
                        print(
                            f"  {name} {backend} t={threads} B={batch_size}: {rate:.1f}/s",
                            file=sys.stderr,
                            flush=True,
                        )

    return rows


def _print_table(rows: list[tuple], args: argparse.Namespace) -> None:
    print(f"`{' '.join(shlex.quote(a) for a in ['python', *sys.argv])}`\n")
    print(
        f"{_cpu_name()}, {os.cpu_count()} logical CPUs; torch {torch.__version__}; "
        f"onnxruntime {_ort_version()}; excerpts: melcnn 3.0 s, samplecnn 2.68 s at 22050 Hz; "
        f"background busy processes: {args.background_load}; params include a 50-tag head\n"
    )
    print(
        "| encoder | params | backend | threads | batch | excerpts/s | × real time "
        "| build + 1st call s |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for name, params, backend, threads, bs, rate, rt, setup in rows:
        print(
            f"| {name} | {params} | {backend} | {threads} | {bs} | {rate:.1f} | {rt:.0f}× "
            f"| {setup:.1f} |"
        )


def _ort_version() -> str:
    try:
        import onnxruntime

        return onnxruntime.__version__
    except ImportError:
        return "not installed"


if __name__ == "__main__":
    raise SystemExit(main())
