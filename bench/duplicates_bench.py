"""Same recording, another encoding: does the duplicate cut-off separate it from other tracks?

    python bench/duplicates_bench.py --music <folder of real tracks> --limit 42 \
        --models resources/models/musicssl-default <other bundle> ...

Copies up to `--limit` tracks into a scratch folder together with an MP3 re-encode of each (mono,
44.1 kHz, `--bitrate`; the user's files are only read), analyses them with each bundle in a fresh
library and data folder through the engine, and prints per bundle: the cosine between a track
and its re-encode (lowest, median), the highest cosine between two different recordings, and
what `Library.duplicates()` finds at the model's own cut-off (`similar.duplicate_threshold`).
A model whose different-recording maximum passes the cut-off would merge distinct tracks; one whose
same-recording minimum falls below it would miss duplicates. The duration check of
`duplicates()` is part of what is measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

AUDIO = {".ogg", ".oga", ".opus", ".flac", ".mp3", ".wav", ".m4a"}


def reencode(src: Path, dest: Path, bitrate: int, rate: int = 44100) -> None:
    from musicssl.engine.decode import decode

    samples = decode(src, rate)[None, :]
    with av.open(str(dest), "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=rate)
        stream.layout = "mono"
        stream.bit_rate = bitrate
        frame_size = 1152
        for i in range(0, samples.shape[1], frame_size):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[:, i : i + frame_size]), format="fltp", layout="mono"
            )
            frame.sample_rate = rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def measure(bundle: Path, music: Path, scratch: Path) -> dict:
    os.environ["MUSICSSL_DATA_DIR"] = str(scratch / "data")
    from musicssl.engine import models
    from musicssl.engine.library import Library
    from musicssl.engine.similar import duplicate_threshold

    with Library(scratch / f"{bundle.name}.db") as lib:
        info = models.install_bundle(bundle)
        lib.use_model(info.model_id)
        lib.scan([music])
        report = lib.analyze()
        ids, vectors = lib.embedding_matrix()
        names = {t["id"]: Path(t["path"]).stem for t in lib.tracks_by_id(ids.tolist())}
        groups = [sorted(Path(t["path"]).stem for t in g) for g in lib.duplicates()]
    stems = [names[i] for i in ids.tolist()]
    recording = np.array([s.removesuffix(".mp3-copy") for s in stems])
    cos = vectors @ vectors.T
    same = recording[:, None] == recording[None, :]
    np.fill_diagonal(same, False)
    different = recording[:, None] != recording[None, :]
    right = sum(len(g) == 2 and g[0].removesuffix(".mp3-copy") == g[1].removesuffix(".mp3-copy")
                for g in groups)  # fmt: skip
    return {
        "analysed": report.analyzed,
        "cut_off": duplicate_threshold(info.config.whitened),
        "same_min": float(cos[same].min()),
        "same_median": float(np.median(cos[same])),
        "different_max": float(cos[different].max()),
        "different_p99": float(np.quantile(cos[different], 0.99)),
        "groups": len(groups),
        "right_groups": right,
        "recordings": len(set(recording)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--music", type=Path, required=True)
    parser.add_argument("--models", type=Path, nargs="+", required=True)
    parser.add_argument("--limit", type=int, default=42)
    parser.add_argument("--bitrate", type=int, default=128000)
    args = parser.parse_args()
    files = sorted(p for p in args.music.rglob("*") if p.suffix.lower() in AUDIO)[: args.limit]
    if not files:
        print(f"no audio files under {args.music}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        music = scratch / "music"
        music.mkdir()
        for f in files:
            shutil.copyfile(f, music / f.name)
            reencode(f, music / f"{f.stem}.mp3-copy.mp3", args.bitrate)
        print(f"{len(files)} recordings + MP3 {args.bitrate // 1000} kb/s re-encodes")
        print("| bundle | analysed | same recording: min / median cos | different: max / p99 cos "
              "| cut-off | duplicate groups (right) |")  # fmt: skip
        print("|---|---:|---|---|---:|---|")
        for bundle in args.models:
            r = measure(bundle, music, scratch)
            print(f"| {bundle} | {r['analysed']} | {r['same_min']:.4f} / {r['same_median']:.4f} "
                  f"| {r['different_max']:.4f} / {r['different_p99']:.4f} | {r['cut_off']} "
                  f"| {r['groups']} ({r['right_groups']} of {r['recordings']}) |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
