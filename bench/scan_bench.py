"""Scanner throughput: first scan and unchanged rescan of N tagged MP3s into a temporary library.

    python bench/scan_bench.py --files 20000

One short real MP3 is encoded once (tests/audio_fixtures.write_audio); each of the N copies gets
its own ID3 tag (title, artist, album, album artist, genres, year, track) rendered by mutagen in
memory, laid out as artist/album/NN.mp3 folders of 12 tracks. Files are freshly written, so the
first scan reads them from the page cache: this measures the scanner, not the disk.
Prints a Markdown table row per run (see `HEADER`).
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import mutagen.id3
from musicssl.engine import db as dbmod
from musicssl.engine import scanner
from mutagen.id3 import ID3, TALB, TCON, TDRC, TIT2, TPE1, TPE2, TRCK

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from audio_fixtures import write_audio  # noqa: E402

HEADER = (
    "| command | files | first scan (s) | first scan (files/s) | rescan (s) | rescan (files/s) |\n"
    "|---|---:|---:|---:|---:|---:|"
)
GENRES = ["Rock", "Pop", "Jazz", "Ambient", "Hip-Hop", "Classical", "Folk", "Electronic"]


def make_tree(root: Path, n: int, seconds: float) -> None:
    template = root / "template.mp3"
    write_audio(template, seconds=seconds, seed=1)
    raw = io.BytesIO(template.read_bytes())
    mutagen.id3.delete(raw)  # the audio frames only; every copy gets its own tag
    audio = raw.getvalue()
    template.unlink()
    for i in range(n):
        artist, album, track = i // 120, (i // 12) % 10, i % 12 + 1
        folder = root / f"Artist {artist:04d}" / f"Album {album}"
        if track == 1:
            folder.mkdir(parents=True, exist_ok=True)
        tags = ID3()
        tags.add(TIT2(encoding=3, text=f"Sóng {i}"))
        tags.add(TPE1(encoding=3, text=f"Artist {artist}"))
        tags.add(TPE2(encoding=3, text=f"Artist {artist}"))
        tags.add(TALB(encoding=3, text=f"Album {artist}-{album}"))
        tags.add(TCON(encoding=3, text=[GENRES[i % 8], GENRES[(i // 8) % 8]]))
        tags.add(TDRC(encoding=3, text=str(1960 + i % 60)))
        tags.add(TRCK(encoding=3, text=f"{track}/12"))
        out = io.BytesIO(audio)
        tags.save(out, padding=lambda info: 0)
        (folder / f"{track:02d}.mp3").write_bytes(out.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each MP3")
    parser.add_argument("--dir", help="work folder (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the generated tree and DB")
    args = parser.parse_args(argv)

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="scan_bench_"))
    music = work / "music"
    music.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        make_tree(music, args.files, args.seconds)
        print(f"generated {args.files} files in {time.perf_counter() - t:.1f} s", file=sys.stderr)

        db = dbmod.connect(work / "library.db")
        first = scanner.scan(db, [music])
        again = scanner.scan(db, [music])
        rows = db.execute("SELECT count(*) FROM tracks WHERE status = 'new'").fetchone()[0]
        tags = db.execute("SELECT count(*) FROM tags WHERE source = 'file'").fetchone()[0]
        db.conn.close()
        print(f"first:  {first.summary()}", file=sys.stderr)
        print(f"rescan: {again.summary()}", file=sys.stderr)
        print(f"rows with status 'new': {rows}, file tags: {tags}", file=sys.stderr)
        ok = first.added == args.files and again.unchanged == args.files and rows == args.files
        args_text = " ".join(argv if argv is not None else sys.argv[1:])
        command = f"python bench/scan_bench.py {args_text}"
        print(HEADER)
        print(
            f"| `{command.strip()}` | {args.files} | {first.seconds:.2f} | "
            f"{args.files / first.seconds:,.0f} | {again.seconds:.2f} | "
            f"{args.files / again.seconds:,.0f} |"
        )
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
