"""End-to-end analysis throughput (decode + inference + DB write) per encoder and excerpt policy.

    python bench/analysis_bench.py --tracks 200 --unique 20

Builds a library of real-encoded mp3 tracks of 3–6 minutes (`--unique` distinct recordings, copied
to `--tracks` files so generation stays quick; decoding cost is per file either way), then for each
configuration runs `musicssl analyze` logic in a fresh subprocess (so peak RSS is per configuration)
and prints × real time, seconds per 4-minute track, peak RSS, and — for the spaced policies —
how far the track embeddings move from the all-excerpts reference (mean cosine, top-10
neighbour overlap).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

# "shipped": the bundle the app uses by default (its whitening and statistics included);
# the others are random-init bundles of an architecture (speed does not depend on the weights).
CONFIGS = {
    "shipped-spaced16": ("shipped", "spaced", 16),
    "melcnn-spaced16": ("melcnn", "spaced", 16),
    "melcnn-spaced8": ("melcnn", "spaced", 8),
    "melcnn-spaced4": ("melcnn", "spaced", 4),
    "melcnn-all": ("melcnn", "all", 0),
    "samplecnn-spaced8": ("samplecnn", "spaced", 8),
}


def make_library(folder: Path, tracks: int, unique: int) -> None:
    from audio_fixtures import write_audio
    from mutagen.easyid3 import EasyID3

    rng = np.random.default_rng(0)
    sources = []
    for i in range(unique):
        seconds = float(rng.uniform(180, 360))
        sources.append(write_audio(folder / f"src{i:03d}.mp3", seconds=seconds, seed=i))
    for i in range(tracks):
        dest = folder / "lib" / f"track{i:04d}.mp3"
        dest.parent.mkdir(exist_ok=True)
        shutil.copyfile(sources[i % unique], dest)
        tags = EasyID3(dest)
        tags["title"] = f"Track {i}"
        tags.save()
    for src in sources:
        src.unlink()


def run_one(db: Path, data: Path, arch: str, policy: str, count: int, out: Path) -> None:
    """Child process: install the shipped or a random-init bundle of `arch`, analyse, report."""
    os.environ["MUSICSSL_DATA_DIR"] = str(data)
    import torch
    from musicssl.engine import bundle as bundlemod
    from musicssl.engine import models
    from musicssl.engine.analysis import AnalysisOptions
    from musicssl.engine.excerpts import ExcerptPolicy
    from musicssl.engine.library import Library

    torch.manual_seed(0)
    if arch == "shipped":
        info = models.best_bundle()
    else:
        cfg = bundlemod.default_config(f"bench-{arch}", arch)
        src = data / f"bundle-{arch}"
        if not src.exists():
            bundlemod.save_bundle(bundlemod.build_model(cfg), cfg, src)
        info = models.install_bundle(src)
    with Library(db) as lib:
        lib.use_model(info.model_id)
        options = AnalysisOptions(policy=ExcerptPolicy(policy, max(count, 1)))
        started = time.perf_counter()
        report = lib.analyze(options)
        wall = time.perf_counter() - started
        ids, vectors = lib.embedding_matrix()
    np.save(out.with_suffix(".npy"), vectors[np.argsort(ids)])
    out.write_text(
        json.dumps(
            {
                "tracks": report.analyzed,
                "failed": report.failed,
                "audio_s": report.audio_seconds,
                "wall_s": wall,
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def agreement(reference: np.ndarray, other: np.ndarray, unique: int) -> tuple[float, float]:
    """Mean cosine to the reference embedding, and top-10 neighbour overlap (copies excluded)."""
    cos = float(np.mean(np.sum(reference * other, axis=1)))
    n = reference.shape[0]
    groups = np.arange(n) % unique
    overlaps = []
    for i in range(n):
        keep = groups != groups[i]
        ref_top = set(np.flatnonzero(keep)[np.argsort(-(reference[keep] @ reference[i]))[:10]])
        oth_top = set(np.flatnonzero(keep)[np.argsort(-(other[keep] @ other[i]))[:10]])
        overlaps.append(len(ref_top & oth_top) / 10)
    return cos, float(np.mean(overlaps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=200)
    parser.add_argument("--unique", type=int, default=20)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        db, data, arch, policy, count, out = args.child
        run_one(Path(db), Path(data), arch, policy, int(count), Path(out))
        return

    from musicssl.engine.library import Library

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        make_library(tmp, args.tracks, args.unique)
        print(
            f"generated {args.tracks} tracks in {time.perf_counter() - t0:.0f} s", file=sys.stderr
        )
        base_db = tmp / "base.db"
        with Library(base_db) as lib:
            lib.scan([tmp / "lib"])
        results = {}
        for name in args.configs:
            arch, policy, count = CONFIGS[name]
            db = tmp / f"{name}.db"
            shutil.copyfile(base_db, db)
            out = tmp / f"{name}.json"
            cmd = [
                sys.executable,
                __file__,
                "--child",
                str(db),
                str(tmp / "data"),
                arch,
                policy,
                str(count),
                str(out),
            ]
            subprocess.run(cmd, check=True)
            results[name] = json.loads(out.read_text())
            results[name]["vectors"] = np.load(out.with_suffix(".npy"))
            print(name, {k: v for k, v in results[name].items() if k != "vectors"}, file=sys.stderr)

    print(f"`python bench/analysis_bench.py --tracks {args.tracks} --unique {args.unique}`\n")
    print(
        "| config | tracks | audio h | wall s | × real time | s per 4-min track | peak RSS MB "
        "| cos to all-excerpts | top-10 overlap |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        arch = CONFIGS[name][0]
        ref = results.get(f"{arch}-all")
        cos, overlap = ("", "")
        if ref is not None and ref is not r:
            c, o = agreement(ref["vectors"], r["vectors"], args.unique)
            cos, overlap = f"{c:.3f}", f"{o:.2f}"
        speed = r["audio_s"] / r["wall_s"]
        print(
            f"| {name} | {r['tracks']} | {r['audio_s'] / 3600:.1f} | {r['wall_s']:.1f} | "
            f"{speed:.0f}× | {240 / speed:.2f} | {r['rss_mb']:.0f} | {cos} | {overlap} |"
        )


if __name__ == "__main__":
    main()
