"""The track table pages deep into a large library by its ordered id list, and agrees row for
row with LIMIT/OFFSET for every sort column, filter and search. Real SQLite, real Qt model."""

from __future__ import annotations

import os
import threading

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from conftest_app import *  # noqa: F403 - the fixtures
from musicssl.app.models.page_loader import PageLoader
from musicssl.app.models.track_table import COLUMNS, DIRECT_PAGES, PAGE_SIZE, TrackTableModel
from musicssl.engine import db as dbmod
from musicssl.engine.library import Library
from PySide6.QtCore import Qt

N = 6000  # more than DIRECT_PAGES * PAGE_SIZE rows, so deep pages go through the id list


@pytest.fixture
def big(tmp_path) -> Library:
    lib = Library(tmp_path / "big.db")
    with dbmod.transaction(lib.db) as conn:
        conn.executemany(
            "INSERT INTO tracks (path, title, artist, album, genre, year, duration, status, "
            "missing, added_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0)",
            [
                (
                    f"/m/{i:05d}.flac",
                    f"Song {i * 7919 % N}",
                    f"Artist {i % 37}" if i % 11 else None,
                    f"Album {i % 101}",
                    ["Rock", "Jazz", None][i % 3],
                    1960 + i % 60,
                    float(i % 300),
                    ["new", "analyzed", "error"][i % 3],
                    int(i % 50 == 0),
                )
                for i in range(N)
            ],
        )
    yield lib
    lib.close()


def offset_rows(lib: Library, model: TrackTableModel, start: int, n: int) -> list[int]:
    rows = lib.tracks(
        model.filters, model.search or None, model.order_by, model.descending, n, start
    )
    return [r["id"] for r in rows]


def model_rows(model: TrackTableModel, start: int, n: int) -> list[int]:
    return [model.track_id(r) for r in range(start, min(start + n, model.rowCount()))]


def test_deep_pages_match_limit_offset_for_every_order(big):
    model = TrackTableModel(big)
    assert DIRECT_PAGES * PAGE_SIZE < model.rowCount() < N
    deep = model.rowCount() - 150  # inside the last page
    for column in range(len(COLUMNS)):
        for order in (Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder):
            model.sort(column, order)
            for start in (0, DIRECT_PAGES * PAGE_SIZE + 13, deep):
                assert model_rows(model, start, 20) == offset_rows(big, model, start, 20), (
                    COLUMNS[column][0],
                    order,
                    start,
                )
    for filters, search in ((["genre=Jazz"], ""), ([], "Song 1")):
        model.set_extra_filters(filters)
        model.set_search(search)
        last = model.rowCount() - 5
        assert model_rows(model, last, 5) == offset_rows(big, model, last, 5)


def test_deep_page_is_one_id_list_then_lookups(big):
    model = TrackTableModel(big)
    model.track(model.rowCount() - 1)
    reads = model.pages_fetched
    # Every other deep page is a lookup by id: no further ordered scan of the library.
    ids = model._ids
    assert ids is not None and len(ids) == model.rowCount()
    model.track(model.rowCount() // 2)
    assert model._ids is ids and model.pages_fetched == reads + 1


def test_loader_serves_deep_rows_and_follows_removals(qtbot, big):
    loader = PageLoader(big.path)
    try:
        model = TrackTableModel(big, loader=loader)
        # The id list is read in the background straight away (its length is the count).
        qtbot.waitUntil(lambda: model.exact and model._ids is not None, timeout=10000)
        count = model.rowCount()
        assert count == big.count(model.filters)
        deep = model.index(count - 1, 0)
        with qtbot.waitSignal(model.dataChanged, timeout=10000):
            assert deep.data() == "…"
        expected = offset_rows(big, model, count - 1, 1)[0]
        assert model.track_id(count - 1) == expected
        # Rows removed behind the model: a refresh reads the list again and shrinks.
        with dbmod.transaction(big.db) as conn:
            conn.execute("DELETE FROM tracks WHERE id IN (SELECT id FROM tracks LIMIT 100)")
        model.refresh()
        qtbot.waitUntil(lambda: model._ids is not None and len(model._ids) == count - 100)
        assert model.rowCount() == count - 100
        last = model.rowCount() - 1
        assert model.track_id(last) == offset_rows(big, model, last, 1)[0]
    finally:
        loader.stop()


def test_filter_and_sort_run_no_sql_on_the_gui_thread(qtbot, big):
    """Counting a search is a full scan: the model asks the loader, never its own connection."""
    loader = PageLoader(big.path)
    statements: list[str] = []
    try:
        model = TrackTableModel(big, loader=loader)
        qtbot.waitUntil(lambda: model.exact, timeout=10000)
        big.db.conn.set_trace_callback(statements.append)
        for change in (
            lambda: model.set_search("Song 1"),
            lambda: model.sort(0, Qt.SortOrder.DescendingOrder),
            lambda: model.set_extra_filters(["genre=Jazz"]),
            model.refresh,
        ):
            change()
            qtbot.waitUntil(lambda: model.exact and not model._ids_requested, timeout=10000)
        assert statements == []
        big.db.conn.set_trace_callback(None)
        assert model.rowCount() == big.count(model.filters, model.search)
        assert model_rows(model, 0, 20) == offset_rows(big, model, 0, 20)
    finally:
        big.db.conn.set_trace_callback(None)
        loader.stop()


def test_loader_serves_pages_before_the_id_list(qtbot, big):
    loader = PageLoader(big.path)
    release = threading.Event()
    served: list[int] = []
    loader.loaded.connect(lambda _gen, key, _result: served.append(key))
    try:
        loader.request(0, 99, lambda lib: release.wait(10))  # keeps the loader busy
        qtbot.waitUntil(lambda: not loader._requests, timeout=10000)
        loader.request(1, 0, lambda lib: lib.tracks(limit=PAGE_SIZE))
        loader.request(1, -1, lambda lib: lib.track_ids())  # newer, yet served after the page
        release.set()
        qtbot.waitUntil(lambda: len(served) == 3, timeout=10000)
        assert served == [99, 0, -1]
    finally:
        loader.stop()


def test_a_stale_read_is_interrupted_for_the_new_query(qtbot, big):
    loader = PageLoader(big.path)
    served: list[tuple[int, int, object]] = []
    loader.loaded.connect(lambda gen, key, result: served.append((gen, key, result)))
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000000)"
        " SELECT count(*) FROM c"
    )
    try:
        loader.request(1, -1, lambda lib: lib.db.execute(endless).fetchone())
        qtbot.waitUntil(lambda: loader._running == 1, timeout=10000)
        loader.forget_before(2)  # the user sorted again: the old id list is not wanted
        loader.request(2, 0, lambda lib: [t["id"] for t in lib.tracks(limit=5)])
        qtbot.waitUntil(lambda: len(served) == 2, timeout=30000)
        assert served[0] == (1, -1, None)  # interrupted, not finished
        assert served[1] == (2, 0, [t["id"] for t in big.tracks(limit=5)])
    finally:
        loader.stop()
