"""How long does the track table take to show a page deep into a 100,000-track library?

A library of N synthetic tracks is written straight through the engine's DB layer (no audio:
only the rows matter), then the page the view asks for when the user drags the scrollbar to
the top, the middle and the end is timed for several sort columns, with and without a filter
and a search, exactly as `TrackTableModel` asks for it.

    python bench/paging_bench.py                  # 100,000 tracks
    python bench/paging_bench.py --tracks 20000
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

GENRES = ["Rock", "Jazz", "Pop", "Classical", "Electronic", "Folk", "Hip-Hop", "Ambient", None]
WORDS = [
    "love",
    "night",
    "blue",
    "road",
    "fire",
    "rain",
    "heart",
    "dream",
    "city",
    "song",
    "light",
    "gold",
    "river",
    "time",
]


def make_library(path: Path, n: int) -> None:
    from musicssl.engine import db as dbmod

    rng = random.Random(0)
    database = dbmod.connect(path)
    now = time.time()
    rows = []
    for i in range(n):
        artist = f"Artist {rng.randrange(n // 25 + 1):05d}"
        album = f"Album {rng.randrange(n // 10 + 1):05d}"
        title = " ".join(rng.sample(WORDS, 2)).title() + f" {i}"
        rows.append(
            (
                f"/music/{artist}/{album}/{i:06d}.flac",
                title,
                artist,
                album,
                rng.choice(GENRES),
                rng.randrange(1950, 2026),
                rng.uniform(60, 600),
                rng.choice(["flac", "mp3", "aac", "vorbis"]),
                rng.choice(["new", "analyzed", "analyzed", "analyzed", "error"]),
                now - rng.uniform(0, 1e7),
                now,
            )
        )
    with dbmod.transaction(database) as conn:
        conn.executemany(
            "INSERT INTO tracks (path, title, artist, album, genre, year, duration, codec, "
            "status, added_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.executemany(
            "INSERT INTO tags (track_id, tag, source, score) VALUES (?, ?, 'user', 1.0)",
            [(i, "favourite") for i in range(1, n + 1, 7)],
        )
    database.conn.execute("ANALYZE")
    database.conn.close()


def time_pages(model, label: str, rows: list[str]) -> None:  # noqa: ANN001
    """Time the page under the scrollbar at the top, middle and end, as the view asks (the
    first deep page also reads the ordered id list, when the model pages by one)."""
    from musicssl.app.models.track_table import PAGE_SIZE

    count = model.rowCount()
    cells = []
    for where in (0, count // 2, max(0, count - PAGE_SIZE)):
        t0 = time.perf_counter()
        model.track(where)  # the page holding that row, read on this thread
        cells.append(f"{(time.perf_counter() - t0) * 1000:7.1f}")
    rows.append(f"| {label:<44} | {count:>7,} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=100_000)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="paging-"))
    os.environ["MUSICSSL_DATA_DIR"] = str(work / "data")
    db_path = work / "library.db"
    t0 = time.perf_counter()
    make_library(db_path, args.tracks)
    print(f"wrote {args.tracks:,} tracks in {time.perf_counter() - t0:.1f} s")

    from musicssl.app.models.track_table import COLUMNS, TrackTableModel
    from musicssl.engine.library import Library
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    QApplication.instance() or QApplication([sys.argv[0]])
    rows = [
        "| view (ms per page of 200 rows; middle = first deep page) | rows | top | middle | end |",
        "|---|---:|---:|---:|---:|",
    ]
    with Library(db_path) as lib:
        model = TrackTableModel(lib)  # no loader: pages are read on this thread and timed
        for column, (key, _header) in enumerate(COLUMNS):
            for order in (Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder):
                model.sort(column, order)
                arrow = "↓" if order == Qt.SortOrder.DescendingOrder else "↑"
                time_pages(model, f"sorted by {key} {arrow}", rows)
        model.sort(1, Qt.SortOrder.AscendingOrder)
        model.set_extra_filters(["genre=Jazz"])
        time_pages(model, "genre=Jazz, by artist", rows)
        model.set_extra_filters(["tag=favourite"])
        time_pages(model, "tag=favourite, by artist", rows)
        model.set_extra_filters([])
        model.set_search("love")
        time_pages(model, "search 'love', by artist", rows)
        model.set_search("")
        t0 = time.perf_counter()
        model.reload()
        print(f"reload (count + reset): {(time.perf_counter() - t0) * 1000:.1f} ms")
    print("\n".join(rows))
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
