"""Training-step throughput per objective and encoder on CPU, with the augmentation's share.

For each (encoder, objective) a fresh subprocess builds the default-size model and the
objective with its default heads, then times `--steps` training steps (after one warm-up step)
on a fixed batch of synthetic music-like waveforms, as `training.pretrain` runs them: the CLMR
augmentation on both views, then objective forward + backward + Adam step + after_step. The
subprocess is what makes "peak RSS" (getrusage ru_maxrss) mean that configuration's peak rather
than the largest of all runs so far.

Columns: excerpts/s counts both views (2 x batch) per second of forward+backward+optimizer
time; "with aug" also counts the augmentation time; "aug share" = augmentation / (augmentation
+ step). Prints a Markdown table plus the exact command line.

    python bench/train_bench.py --encoder melcnn --batch 48 --steps 5
    python bench/train_bench.py --encoder melcnn samplecnn --objectives contrastive byol
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from musicssl.engine.bundle import build_model, default_config
from musicssl.training.augment import Augment
from musicssl.training.objectives import OBJECTIVES, build_objective

ENCODERS = ("melcnn", "samplecnn")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def music_batch(batch: int, samples: int, rate: int, seed: int = 0) -> torch.Tensor:
    """Notes with harmonics, decays and noise hits: augmentations see realistic spectra."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / rate
    rows = np.zeros((batch, samples), dtype=np.float32)
    for b in range(batch):
        base = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        beat = 60.0 / rng.uniform(70, 160)
        for start in np.arange(0.0, samples / rate, beat):
            i0, i1 = int(start * rate), min(samples, int((start + beat) * rate))
            tt = t[i0:i1] - start
            f = base * 2 ** (rng.choice([0, 3, 5, 7, 10, 12]) / 12)
            tone = sum(np.sin(2 * np.pi * f * k * tt) / k for k in range(1, 6))
            rows[b, i0:i1] += np.exp(-3 * tt / beat) * tone
            hit = min(i1 - i0, int(0.02 * rate))
            rows[b, i0 : i0 + hit] += rng.normal(0, 0.5, hit)
        rows[b] *= 0.5 / max(1e-9, np.abs(rows[b]).max())
    return torch.from_numpy(rows)


def measure(encoder: str, objective_name: str, batch: int, steps: int, threads: int) -> dict:
    """One configuration, in this process: returns timings and peak RSS."""
    torch.manual_seed(0)
    if threads:
        torch.set_num_threads(threads)
    config = default_config("bench", encoder)
    model = build_model(config)
    objective = build_objective(objective_name, model)
    objective.train()
    optimizer = torch.optim.Adam(objective.online_parameters(), lr=1e-4)
    augment = Augment(config.sample_rate)
    n = config.excerpt_samples
    x1 = music_batch(batch, n, config.sample_rate, seed=1)
    x2 = music_batch(batch, n, config.sample_rate, seed=1).roll(n // 3, dims=1)
    generator = torch.Generator().manual_seed(0)
    extra: dict[str, torch.Tensor] = {"index": torch.arange(batch)}
    if objective.views == "pairs":
        extra["index2"] = torch.arange(batch).roll(1)
        extra["groups1"] = torch.stack([torch.arange(batch), torch.arange(batch) // 4 + batch], 1)
        extra["groups2"] = extra["groups1"].roll(1, dims=0)
    aug_times, step_times = [], []
    for step in range(steps + 1):  # step 0 warms up allocators and kernels
        start = time.perf_counter()
        views = {
            "x1": augment(x1, generator=generator),
            "x2": augment(x2, generator=generator),
            **extra,
        }
        mid = time.perf_counter()
        loss, _ = objective(views, step, steps + 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        objective.after_step(step, steps + 1)
        end = time.perf_counter()
        if step:
            aug_times.append(mid - start)
            step_times.append(end - mid)
    aug, step_s = float(np.mean(aug_times)), float(np.mean(step_times))
    return {
        "encoder": encoder,
        "objective": objective_name,
        "batch": batch,
        "steps": steps,
        "threads": torch.get_num_threads(),
        "step_s": step_s,
        "aug_s": aug,
        "excerpts_per_s": 2 * batch / step_s,
        "excerpts_per_s_with_aug": 2 * batch / (step_s + aug),
        "aug_share": aug / (aug + step_s),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", nargs="+", default=list(ENCODERS), choices=ENCODERS)
    parser.add_argument("--objectives", nargs="+", default=sorted(OBJECTIVES))
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--samplecnn-steps", type=int, default=2, help="steps for samplecnn (~15x the compute)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        encoder, name = args.worker.split(":")
        steps = args.samplecnn_steps if encoder == "samplecnn" else args.steps
        print(json.dumps(measure(encoder, name, args.batch, steps, args.threads)))
        return

    unknown = sorted(set(args.objectives) - set(OBJECTIVES))
    if unknown:
        parser.error(f"unknown objective(s) {unknown}; choose from {sorted(OBJECTIVES)}")
    rows = []
    for encoder in args.encoder:
        for name in args.objectives:
            cmd = [
                sys.executable, __file__, "--worker", f"{encoder}:{name}",
                "--batch", str(args.batch), "--steps", str(args.steps),
                "--samplecnn-steps", str(args.samplecnn_steps), "--threads", str(args.threads),
            ]  # fmt: skip
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{encoder:>9} {name:<12} {row['excerpts_per_s']:7.1f} ex/s  "
                f"aug {100 * row['aug_share']:4.1f}%  {row['peak_rss_mib']:7.0f} MiB",
                file=sys.stderr,
            )

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\nCPU: {_cpu_name()}, {os.cpu_count()} logical cores, load average at the end "
        f"{load:.2f}; torch {torch.__version__}, {rows[0]['threads']} thread(s)\n"
    )
    print(
        "| encoder | objective | batch | steps | step s | excerpts/s | with aug | aug s "
        "| aug share | peak RSS MiB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['encoder']} | {r['objective']} | {r['batch']} | {r['steps']} "
            f"| {r['step_s']:.2f} | {r['excerpts_per_s']:.1f} | {r['excerpts_per_s_with_aug']:.1f} "
            f"| {r['aug_s']:.2f} | {100 * r['aug_share']:.1f}% | {r['peak_rss_mib']:.0f} |"
        )
    print(f"\n`{shlex.join(['python', 'bench/train_bench.py', *sys.argv[1:]])}`")


if __name__ == "__main__":
    main()
