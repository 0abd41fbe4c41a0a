"""A 100,000-track library in the real window: start to first paint, filter, sort, find similar.

    python bench/scale_bench.py                          # builds /tmp/musicssl-scale-100000.db
    python bench/scale_bench.py --tracks 100000 --db lib.db --runs 5

The library is written straight through the engine's DB layer (no audio): tracks with varied
metadata, a third of them with a genre tag, one clustered unit embedding each (the model's
dimension) with an excerpt set of 16 vectors scattered around it (`--set-size`, as the default
analysis stores; engine/excerpt_sets.py), published as the index model, and the HNSW index built
and saved by `open_index` as an analysis would leave it. The DB is kept and reused (`--db`),
since building the index takes minutes.

Then, each in a fresh process (OS file cache warm, as after any earlier run):
- engine: open the library, load the index, time `similar()`; resident memory with 100k indexed.
- app: the real MainWindow offscreen. "First paint" is process spawn to the first paint of the
  track table that shows real rows (not placeholders). Each interaction is timed on the GUI
  thread (how long the window is frozen) and until its first rows are painted (what the user
  waits for): search text, a tag filter, sorting by a column, jumping to the end of the list,
  and find similar (menu action to results shown). The search box's own typing debounce is
  not included (the filter is applied directly, as pressing Enter does).
Targets: interactive filter/sort <= 100 ms, find similar <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import measure
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODEL = "scale-bench"
GENRES = ["Rock", "Jazz", "Ambient", "Classical", "Electronic", "Folk", "Hip-Hop", "Pop"]
WORDS = ["night", "river", "blue", "fire", "dance", "home", "light", "rain", "gold", "echo"]
CODECS = ["mp3", "flac", "aac", "vorbis", "opus"]


def build(path: Path, n: int, dim: int, set_size: int) -> dict:
    from index_bench import clustered
    from musicssl.engine import db as dbmod
    from musicssl.engine import embeddings, excerpt_sets
    from musicssl.engine.index import open_index

    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = dbmod.connect(path)
    rng = np.random.default_rng(1)
    x = clustered(n, dim, seed=3)
    now = dbmod.now()
    started = time.perf_counter()
    batch = 10_000
    for start in range(0, n, batch):
        ids = range(start + 1, min(n, start + batch) + 1)
        rows = []
        for i in ids:
            artist, album = i // 120, i // 12
            title = f"{WORDS[i % 10]} {WORDS[(i // 10) % 10]} {i}"
            rows.append(
                (i, f"/music/Artist {artist}/Album {album}/{i:06d} {title}.mp3", title.title(),
                 f"Artist {artist}", f"Album {album}", GENRES[album % len(GENRES)],
                 1960 + album % 60, 120 + float(rng.integers(0, 300)), CODECS[i % 5], now, now)
            )  # fmt: skip
        with dbmod.transaction(db) as conn:
            conn.executemany(
                "INSERT INTO tracks (id, path, title, artist, album, genre, year, duration, codec,"
                " status, added_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,'analyzed',?,?)",
                rows,
            )
            conn.executemany(
                "INSERT INTO tags (track_id, tag, source, score) VALUES (?, ?, 'file', 1.0)",
                [(r[0], r[5].lower()) for r in rows if r[0] % 3 == 0],
            )
            embeddings.put(conn, MODEL, ((i, x[i - 1]) for i in ids))
            if set_size:
                spread = rng.normal(0, 0.5 / np.sqrt(dim), (len(ids), set_size, dim))
                sets = x[ids.start - 1 : ids.stop - 1, None, :] + spread
                sets /= np.linalg.norm(sets, axis=2, keepdims=True)
                excerpt_sets.put(conn, MODEL, zip(ids, sets, strict=True))
    with dbmod.transaction(db) as conn:
        embeddings.publish_index_model(conn, MODEL, True)
    fill_s = time.perf_counter() - started
    del x
    started = time.perf_counter()
    open_index(db, MODEL)  # builds from the embeddings table and saves it, as analysis does
    index_s = time.perf_counter() - started
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.conn.close()
    return {"fill_s": fill_s, "index_build_save_s": index_s, "db_mb": path.stat().st_size / 2**20}


# -- child: engine only ------------------------------------------------------------------------


def child_engine(db: Path, runs: int) -> dict:
    from musicssl.engine.library import Library

    started = time.perf_counter()
    lib = Library(db)
    index = lib.index()
    open_s = time.perf_counter() - started
    n = lib.count()
    seeds = np.random.default_rng(5).integers(1, n + 1, runs + 1)
    lib.similar([int(seeds[0])], n=20)  # first query pays page-cache and lazy setup
    times = []
    for seed in seeds[1:]:
        t = time.perf_counter()
        results = lib.similar([int(seed)], n=20)
        times.append(time.perf_counter() - t)
        assert len(results) == 20
    return {
        "tracks": n,
        "indexed": len(index),
        "open_and_load_index_s": open_s,
        "similar_ms": [round(t * 1000, 1) for t in times],
        "rss_mb": measure.rss_mb(),
        "peak_mb": measure.peak_mb(),
    }


# -- child: the app ----------------------------------------------------------------------------


def child_app(db: Path, spawned_at: float, runs: int, data: Path) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEvent, QObject, QSettings, Qt
    from PySide6.QtWidgets import QApplication

    app = QApplication(["musicssl-scale-bench"])
    from musicssl.app.settings import AppSettings
    from musicssl.app.window import MainWindow
    from musicssl.engine.library import Library

    class FirstRealPaint(QObject):
        """Records when the table viewport paints with its first row loaded."""

        def __init__(self, model) -> None:  # noqa: ANN001
            super().__init__()
            self.model = model
            self.at: float | None = None

        def eventFilter(self, _obj, event) -> bool:  # noqa: N802, ANN001
            if (
                self.at is None
                and event.type() == QEvent.Type.Paint
                and self.model.rowCount()
                and self.model.data(self.model.index(0, 0)) != "…"
            ):
                self.at = time.time()
            return False

    settings = AppSettings(QSettings(str(data / "settings.ini"), QSettings.Format.IniFormat))
    lib = Library(db)
    window = MainWindow(lib, settings)
    model = window.track_model
    table = window.library_view.table
    watcher = FirstRealPaint(model)
    table.viewport().installEventFilter(watcher)
    window.resize(1400, 900)
    window.show()
    while watcher.at is None:
        app.processEvents()
        time.sleep(0.001)
    first_paint_s = watcher.at - spawned_at
    rss_after_start = measure.rss_mb()

    def shown(row: int) -> bool:
        return 0 <= row < model.rowCount() and model.data(model.index(row, 0)) != "…"

    def timed(action, visible_row=lambda: 0) -> tuple[float, float]:  # noqa: ANN001
        """(GUI thread busy in the action, until the wanted row is loaded and painted), ms."""
        t = time.perf_counter()
        action()
        busy = time.perf_counter() - t
        deadline = time.perf_counter() + 60
        while model.rowCount() and not shown(visible_row()):
            app.processEvents()
            time.sleep(0.0005)
            assert time.perf_counter() < deadline, "page never arrived"
        table.viewport().repaint()
        return busy * 1000, (time.perf_counter() - t) * 1000

    view = window.library_view
    ops: dict[str, list[tuple[float, float]]] = {}

    def record(name: str, action, visible_row=lambda: 0) -> None:  # noqa: ANN001
        ops.setdefault(name, []).append(timed(action, visible_row))

    def search(text: str) -> None:
        view.filter.setText(text)
        view.apply_filter()

    orders = (Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder)
    for i in range(runs):
        word = ["river", "gold", "echo", "blue", "rain"][i % 5]
        record("search text (a word in ~1/5 of titles)", lambda w=word: search(w))
        record("clear search (all 100k rows back)", lambda: search(""))
        genre = GENRES[i % len(GENRES)].lower()
        record("tag filter (a genre tag, 1/24 of tracks)", lambda g=genre: view.set_tag(g))
        record("clear tag filter", lambda: view.set_tag(None))
        record("sort by title", lambda o=orders[i % 2]: table.sortByColumn(0, o))
        record("sort by year", lambda o=orders[(i + 1) % 2]: table.sortByColumn(4, o))
        record("jump to the end of the list", table.scrollToBottom, lambda: model.rowCount() - 1)
        record("back to the top", table.scrollToTop)

    similar_ms = []
    seeds = np.random.default_rng(9).integers(1, model.rowCount() + 1, runs + 1)
    for k, seed in enumerate(seeds):
        got: list = []
        window.similar_finished.connect(got.append)
        t = time.perf_counter()
        window.find_similar([int(seed)])
        while not got:
            app.processEvents()
            time.sleep(0.0005)
        window.similar_view.table.viewport().repaint()
        if k:  # the first one loads the index on the query thread
            similar_ms.append((time.perf_counter() - t) * 1000)
        else:
            first_similar_s = time.perf_counter() - t
        window.similar_finished.disconnect(got.append)
        assert isinstance(got[0], list) and got[0], got[0]
    result = {
        "first_paint_s": first_paint_s,
        "rss_after_start_mb": rss_after_start,
        "ops": {k: [[round(b, 1), round(w, 1)] for b, w in v] for k, v in ops.items()},
        "first_similar_s": first_similar_s,
        "similar_ms": [round(t, 1) for t in similar_ms],
        "rss_end_mb": measure.rss_mb(),
        "peak_mb": measure.peak_mb(),
    }
    window.close()
    lib.close()
    return result


def run_child(args: list[str], data: Path) -> dict:
    return measure.run_child(__file__, args, data, QT_QPA_PLATFORM="offscreen")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--db", type=Path, help="library file to build or reuse")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--set-size", type=int, default=16, help="excerpt vectors per track (0: none)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, db, *rest = args.child
        if kind == "engine":
            result = child_engine(Path(db), int(rest[0]))
        else:
            result = child_app(Path(db), float(rest[0]), int(rest[1]), Path(rest[2]))
        print(json.dumps(result))
        return

    from musicssl.engine.bundle import default_config

    dim = default_config("probe", "melcnn").embedding_dim
    db = args.db or Path(f"/tmp/musicssl-scale-{args.tracks}.db")
    data = db.parent / f"{db.stem}-data"
    data.mkdir(parents=True, exist_ok=True)
    if args.rebuild or not db.exists():
        built = build(db, args.tracks, dim, args.set_size)
        print(json.dumps({"build": built}), file=sys.stderr)
    # The app's first start in a data folder creates the baseline model; a normal start finds it.
    os.environ["MUSICSSL_DATA_DIR"] = str(data)
    from musicssl.engine.models import ensure_baseline

    ensure_baseline()
    engine = run_child(["engine", str(db), str(args.runs)], data)
    print(json.dumps({"engine": engine}), file=sys.stderr)
    first_paints = []
    for _ in range(2):  # the second start finds Python's and Qt's files in the OS cache
        app = run_child(["app", str(db), str(time.time()), str(args.runs), str(data)], data)
        print(json.dumps({"app": app}), file=sys.stderr)
        first_paints.append(app["first_paint_s"])

    print(f"`python bench/scale_bench.py --tracks {args.tracks} --runs {args.runs} --set-size "
          f"{args.set_size}` ({dim}-d embeddings; DB {db.stat().st_size / 2**20:.0f} MB; "
          f"load average {os.getloadavg()[0]:.1f} at the end)\n")  # fmt: skip
    print("| measurement | GUI thread busy ms (median / max) | until rows painted ms "
          "(median / max) |")  # fmt: skip
    print("|---|---:|---:|")
    print(f"| process start → first paint with rows | | {app['first_paint_s'] * 1000:.0f} |")
    for name, runs in app["ops"].items():
        busy = [b for b, _ in runs]
        total = [w for _, w in runs]
        print(
            f"| {name} | {statistics.median(busy):.0f} / {max(busy):.0f} "
            f"| {statistics.median(total):.0f} / {max(total):.0f} |"
        )
    sim = app["similar_ms"]
    first = app["first_similar_s"]
    print(
        "| find similar, click → results painted | | "
        f"{statistics.median(sim):.0f} / {max(sim):.0f} (first, loading the index: {first:.2f} s) |"
    )
    eng = engine["similar_ms"]
    print(
        f"| `Library.similar()` alone (engine) | | {statistics.median(eng):.1f} / {max(eng):.1f} |"
    )
    print()
    print(
        f"First paint of each app run: {', '.join(f'{s:.1f} s' for s in first_paints)}. "
        f"Engine process with {engine['indexed']:,} indexed: open + index load "
        f"{engine['open_and_load_index_s']:.2f} s, RSS {engine['rss_mb']:.0f} MB "
        f"(peak {engine['peak_mb']:.0f} MB). App process: RSS {app['rss_after_start_mb']:.0f} MB "
        f"after first paint, {app['rss_end_mb']:.0f} MB at the end (peak {app['peak_mb']:.0f} MB)."
    )


if __name__ == "__main__":
    main()
