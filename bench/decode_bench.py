"""Decoding speed: real-encoded mp3 and flac files to 22050 Hz mono, on one core, × real time.

    python bench/decode_bench.py --seconds 240 --files 5

Each file is a different seed of tests/audio_fixtures.music_signal, encoded as 128 kb/s CBR mp3
(LAME) and flac into a temporary folder, so the page cache holds them: this measures decoding,
downmixing and soxr resampling, not the disk. The process is pinned to one CPU and FFmpeg's
decoder threading is off (the engine's setting), so the number is per core; the engine gets more
by decoding several files in parallel threads. Prints a Markdown table row (see `HEADER`); the
target is >= 200× real time for both formats.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from musicssl.engine import decode as dec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from audio_fixtures import write_audio  # noqa: E402

RATE = 22050
FORMATS = (".mp3", ".flac")
HEADER = (
    "| command | files | mp3 × real time (median) | flac × real time (median) | decoder threads |\n"
    "|---|---:|---:|---:|---|"
)


def pin_to_one_core() -> str:
    """Pin to a single CPU so the figure is per core even where FFmpeg or soxr could spread."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"cpu {cpu}"


def time_decode(path: Path, repeats: int) -> float:
    """Best wall time of `repeats` full decodes: the least disturbed by other work on the host."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        samples = dec.decode(path, RATE)
        best = min(best, time.perf_counter() - start)
    assert len(samples) > 0
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=240.0, help="length of each file")
    parser.add_argument("--files", type=int, default=5, help="files per format")
    parser.add_argument("--repeats", type=int, default=2, help="decodes per file (best is kept)")
    parser.add_argument(
        "--thread-type",
        default=dec.DECODER_THREAD_TYPE,
        choices=["NONE", "SLICE", "FRAME", "AUTO"],
        help="FFmpeg decoder threading to measure (the engine uses NONE)",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="use every CPU (to see if decoder threads help)"
    )
    args = parser.parse_args(argv)
    dec.DECODER_THREAD_TYPE = args.thread_type

    speed: dict[str, list[float]] = {ext: [] for ext in FORMATS}
    with tempfile.TemporaryDirectory(prefix="decode_bench_") as tmp:
        paths = [
            write_audio(Path(tmp) / f"track{i}{ext}", seconds=args.seconds, seed=i)
            for i in range(args.files)
            for ext in FORMATS
        ]
        pinned = "not pinned" if args.no_pin else pin_to_one_core()
        for path in paths:
            seconds = dec.decoded_duration(path)
            speed[path.suffix].append(seconds / time_decode(path, args.repeats))
            print(f"# {path.name}: {speed[path.suffix][-1]:.0f}× real time", file=sys.stderr)

    command = "python bench/decode_bench.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    med = {ext: statistics.median(v) for ext, v in speed.items()}
    print(HEADER)
    print(
        f"| `{command}` | {args.files} × {args.seconds:g} s "
        f"| {med['.mp3']:.0f}× | {med['.flac']:.0f}× | {args.thread_type}, {pinned} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
