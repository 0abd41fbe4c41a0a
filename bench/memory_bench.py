"""Peak memory of scanning and analysing: one 3-hour file, and a 10,000-file library.

    python bench/memory_bench.py                      # both cases, default excerpt policy
    python bench/memory_bench.py --cases long --policies spaced all
    python bench/memory_bench.py --cases library --files 10000 --seconds 3

Why two cases: a long file tests that decoding is chunked (a 3-hour mix decoded whole would be
1.9 GB of float32 at 44.1 kHz stereo); a large library tests that per-track state is released
and that nothing grows with the number of files (the index grows, by design: ~2 KiB per track).

Each phase (scan, analyse) runs in a fresh child process, so its peak RSS (VmHWM) is its own
and includes the imports it needs. While analysing, the child samples its current RSS at
each progress report, so growth over the run is visible, not only the peak. The 3-hour file is
encoded in 30-second blocks straight into an mp3 (never held whole); the library is 20 distinct
short mp3s copied under 10,000 names (the per-file costs are what matter). A temporary data
folder and library are used: the user's own library and models are never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import measure
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

BLOCK_S = 30.0
RATE = 44100


def write_long_mp3(path: Path, seconds: float) -> None:
    """An mp3 of `seconds`, encoded block by block so memory stays flat whatever the length."""
    import av
    from audio_fixtures import music_signal

    with av.open(str(path), "w", format="mp3") as out:
        out.metadata["title"] = "Three-hour mix"
        out.metadata["artist"] = "Memory Bench"
        stream = out.add_stream("libmp3lame", rate=RATE)
        stream.layout = "stereo"
        stream.bit_rate = 128000
        frame_size = stream.codec_context.frame_size or 1152
        resampler = av.AudioResampler(format=stream.format.name, layout="stereo", rate=RATE)
        done = 0.0
        block = 0
        while done < seconds:
            length = min(BLOCK_S, seconds - done)
            samples = music_signal(block, length, RATE, 2)
            for i in range(0, samples.shape[1], frame_size):
                chunk = np.ascontiguousarray(samples[:, i : i + frame_size])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate = RATE
                for converted in resampler.resample(frame):
                    out.mux(stream.encode(converted))
            done += length
            block += 1
        for converted in resampler.resample(None):
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))


def write_library(folder: Path, files: int, seconds: float, unique: int = 20) -> None:
    from audio_fixtures import write_audio
    from mutagen.easyid3 import EasyID3

    sources = [
        write_audio(folder / f"src{i:02d}.mp3", seconds=seconds, seed=i) for i in range(unique)
    ]
    for i in range(files):
        dest = folder / "lib" / f"d{i // 500:03d}" / f"track{i:05d}.mp3"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sources[i % unique], dest)
        if i < unique:  # a few tagged copies; tags do not change the memory picture
            tags = EasyID3(dest)
            tags["title"] = f"Track {i}"
            tags.save()
    for src in sources:
        src.unlink()


# -- child processes ----------------------------------------------------------------------------


def child_scan(db: Path, folder: Path) -> dict:
    from musicssl.engine.library import Library

    started = time.perf_counter()
    with Library(db) as lib:
        report = lib.scan([folder])
        tracks = lib.status()["tracks"]
    return {
        "phase": "scan",
        "tracks": tracks,
        "errors": len(report.errors),
        "wall_s": time.perf_counter() - started,
        "peak_mb": measure.peak_mb(),
    }


def child_analyze(db: Path, policy: str, count: int) -> dict:
    from musicssl.engine.analysis import AnalysisOptions
    from musicssl.engine.excerpts import ExcerptPolicy
    from musicssl.engine.library import Library

    samples: list[tuple[int, float]] = []
    next_sample = [0]

    def progress(done: int, total: int, _path: str) -> None:
        if done >= next_sample[0] or done == total:
            samples.append((done, round(measure.rss_mb(), 1)))
            next_sample[0] = done + max(1, total // 10)

    with Library(db) as lib:
        lib.active_model()  # the random-init baseline, created in the temp data folder
        baseline = measure.rss_mb()
        options = AnalysisOptions(policy=ExcerptPolicy(policy, max(count, 1)))
        started = time.perf_counter()
        report = lib.analyze(options, progress)
        wall = time.perf_counter() - started
    return {
        "phase": f"analyze-{policy}",
        "tracks": report.analyzed,
        "failed": report.failed,
        "audio_h": report.audio_seconds / 3600,
        "wall_s": wall,
        "rss_before_mb": baseline,
        "rss_samples": samples,
        "peak_mb": measure.peak_mb(),
    }


def run_child(args: list[str], data: Path) -> dict:
    result = measure.run_child(__file__, args, data, PYTHONDONTWRITEBYTECODE="1")
    print(json.dumps(result), file=sys.stderr)
    return result


def run_case(name: str, music: Path, tmp: Path, policies: list[str]) -> list[dict]:
    data = tmp / "data"
    base = tmp / f"{name}-base.db"
    rows = [run_child(["scan", str(base), str(music)], data)]
    for policy in policies:
        db = tmp / f"{name}-{policy}.db"
        shutil.copyfile(base, db)
        rows.append(run_child(["analyze", str(db), policy, "8"], data))
    for row in rows:
        row["case"] = name
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=["long", "library"], choices=["long", "library"])
    ap.add_argument("--hours", type=float, default=3.0, help="length of the long file")
    ap.add_argument("--files", type=int, default=10_000, help="files in the library case")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each library file")
    ap.add_argument("--policies", nargs="+", default=["spaced"], choices=["spaced", "all"])
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "scan":
            result = child_scan(Path(rest[0]), Path(rest[1]))
        else:
            result = child_analyze(Path(rest[0]), rest[1], int(rest[2]))
        print(json.dumps(result))
        return

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp_name:
        tmp = Path(tmp_name)
        if "long" in args.cases:
            folder = tmp / "long"
            folder.mkdir()
            t = time.perf_counter()
            write_long_mp3(folder / "mix.mp3", args.hours * 3600)
            size = (folder / "mix.mp3").stat().st_size / 2**20
            print(f"wrote {args.hours} h mp3 ({size:.0f} MB) in {time.perf_counter() - t:.0f} s",
                  file=sys.stderr)  # fmt: skip
            rows += run_case("long", folder, tmp, args.policies)
        if "library" in args.cases:
            folder = tmp / "library"
            folder.mkdir()
            t = time.perf_counter()
            write_library(folder, args.files, args.seconds)
            print(f"wrote {args.files} files in {time.perf_counter() - t:.0f} s", file=sys.stderr)
            rows += run_case("library", folder / "lib", tmp, args.policies)

    print("| case | phase | tracks | audio h | wall s | RSS before MB | RSS during (done: MB) "
          "| peak RSS MB |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---|---:|")
    for r in rows:
        during = ", ".join(f"{d}: {m:.0f}" for d, m in r.get("rss_samples", []))
        before = f"{r['rss_before_mb']:.0f}" if "rss_before_mb" in r else ""
        audio = f"{r['audio_h']:.2f}" if "audio_h" in r else ""
        print(
            f"| {r['case']} | {r['phase']} | {r['tracks']} | {audio} | {r['wall_s']:.1f} "
            f"| {before} | {during} | {r['peak_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
