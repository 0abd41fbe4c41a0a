"""The track table pages deep into a large library by its ordered id list, and agrees row for
row with LIMIT/OFFSET for every sort column, filter and search. Real SQLite, real Qt model."""

from __future__ import annotations

import os

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
        count = model.rowCount()
        # The id list is read in the background straight away; a deep row then loads.
        qtbot.waitUntil(lambda: model._ids is not None, timeout=10000)
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
