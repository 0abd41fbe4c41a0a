"""Data-loading stall of the real pre-training loop: `musicssl-train pretrain` on encoded files.

`train_bench.py` times steps on a fixed in-memory batch; this one runs the whole CLI on a folder
of real-encoded mp3s (decoded once into the int16 memmap cache, then cropped by the sampler), so
the log's `data_wait_share` (time blocked in the data loader / wall time) says whether loading,
not compute, limits training. The first logged window also holds warm-up and is left out.

    python bench/train_data_bench.py --tracks 64 --steps 30 --objectives contrastive playlist
"""

from __future__ import annotations

import argparse
import csv
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def make_corpus(folder: Path, tracks: int) -> None:
    from audio_fixtures import write_audio

    for i in range(tracks):
        album = folder / f"album{i % 8}"
        album.mkdir(parents=True, exist_ok=True)
        write_audio(album / f"t{i:03d}.mp3", seconds=30.0, seed=i, tags={"album": album.name})


def run(data: Path, out: Path, arch: str, objective: str, steps: int, batch: int) -> dict:
    command = [
        *(sys.executable, "-m", "musicssl.training.cli", "pretrain"),
        *("--data", str(data), "--out", str(out), "--cache", str(data.parent / "cache")),
        *("--arch", arch, "--objective", objective, "--steps", str(steps)),
        *("--batch-size", str(batch), "--log-every", "5", "--checkpoint-every", "0"),
        "--no-progress",
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with open(out / "log.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("data_wait_share")][1:]
    mean = lambda key: sum(float(r[key]) for r in rows) / len(rows)  # noqa: E731
    return {"examples_per_s": mean("examples_per_s"), "wait": mean("data_wait_share")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--arch", default="melcnn")
    parser.add_argument("--objectives", nargs="+", default=["contrastive", "playlist"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "music"
        make_corpus(data, args.tracks)
        print(f"`{shlex.join(['python', 'bench/train_data_bench.py', *sys.argv[1:]])}`\n")
        print("| encoder | objective | excerpts/s | data-wait share |")
        print("|---|---|---:|---:|")
        for objective in args.objectives:
            r = run(data, Path(tmp) / objective, args.arch, objective, args.steps, args.batch)
            print(f"| {args.arch} | {objective} | {r['examples_per_s']:.1f} | {r['wait']:.1%} |")


if __name__ == "__main__":
    main()
