"""The library table as a lazily paged Qt model: 100,000 tracks without 100,000 widgets.

Why paged: the view only ever shows a screenful, so rows are fetched from the facade in pages
of PAGE_SIZE when the view first asks for them, and kept in a small LRU cache. Sorting and
filtering are pushed into the query (ORDER BY / WHERE in SQLite) rather than done in Python.

Why an id list: LIMIT/OFFSET sorts everything before the offset for every page, which took
0.5-2.7 s per page near the end of a 100,000-track library (bench/paging_bench.py). So the
first DIRECT_PAGES pages are read with LIMIT/OFFSET (instant at the top), while the whole
ordered id list is read once per sort/filter; every other page is then a primary-key lookup of
its slice (~0.1 ms). A refresh keeps the list while the row count is unchanged (values are
re-read, rows do not jump under the cursor) and reads it again when rows come or go.

With a `PageLoader` (the window always passes one) pages are fetched on a worker thread: a row
not loaded yet shows a placeholder for a moment, and a refresh while a job runs keeps showing
the old values until the new page arrives (no flicker). Without one, pages are read on the
calling thread, which is simpler for scripts and tests. `track(row)` always answers at once.

Why the count comes from the loader too: counting a search is a full-table text scan (145-220
ms over 100,000 tracks, bench/scale_bench.py), which froze the window on every filter. So a new
sort/filter keeps the old row count as a provisional one, asks for the first page (served
before the id list, so rows appear after one LIMIT query) and the id list, whose length is the
exact count; a page shorter than PAGE_SIZE is already exact.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from musicssl.engine.library import Library
from PySide6.QtCore import (
    QAbstractTableModel,
    QMimeData,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QFont, QPalette
from PySide6.QtWidgets import QApplication

from .. import formatting, mime
from .page_loader import PageLoader

PAGE_SIZE = 200
MAX_PAGES = 64  # cached pages (12,800 rows) before the least recently used is dropped
DIRECT_PAGES = 5  # pages at the top read by LIMIT/OFFSET, not waiting for the id list
IDS = -1  # the loader key of the ordered id list

# (key in the track dict / order_by column, header)
COLUMNS: list[tuple[str, str]] = [
    ("title", "Title"),
    ("artist", "Artist"),
    ("album", "Album"),
    ("genre", "Genre"),
    ("year", "Year"),
    ("duration", "Time"),
    ("codec", "Format"),
    ("status", "Status"),
]
STATUS_TEXT = {"new": "Waiting", "analyzed": "Analysed", "error": "Unreadable"}

# data() runs ~8 times per painted cell (one per role the delegate asks for): on a full window
# that is ~2,000 calls per repaint, 20-100 ms on a loaded machine. So roles are plain ints
# looked up once, roles the model never answers return at once, and the alignment flag is
# combined once (combining Qt flags builds a Python enum member on every call).
DISPLAY = int(Qt.ItemDataRole.DisplayRole)
USER = int(Qt.ItemDataRole.UserRole)
TOOLTIP = int(Qt.ItemDataRole.ToolTipRole)
ALIGNMENT = int(Qt.ItemDataRole.TextAlignmentRole)
FOREGROUND = int(Qt.ItemDataRole.ForegroundRole)
FONT = int(Qt.ItemDataRole.FontRole)
ANSWERED = frozenset({DISPLAY, USER, TOOLTIP, ALIGNMENT, FOREGROUND, FONT})
RIGHT_ALIGNED = int((Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter).value)
NUMERIC = frozenset({"year", "duration"})

Index = QModelIndex | QPersistentModelIndex


class TrackTableModel(QAbstractTableModel):
    """Rows are tracks matching `filters` + `search`, ordered by one column."""

    counted = Signal()  # the exact row count has arrived from the loader (`exact` is True)

    def __init__(
        self,
        lib: Library,
        filters: Sequence[str] = ("missing=0",),
        parent=None,  # noqa: ANN001
        loader: PageLoader | None = None,
    ):
        super().__init__(parent)
        self.lib = lib
        self.loader = loader
        self._generation = 0
        self._pending: set[int] = set()
        self._stale: set[int] = set()
        self._ids: list[int] | None = None  # every row's track id, in order, once read
        self._ids_requested = False
        self._recount = False  # a refresh came while the id list was being read
        if loader is not None:
            loader.loaded.connect(self._on_loaded)
        self.base_filters = list(filters)
        self.extra_filters: list[str] = []
        self.search = ""
        self.order_by = "artist"
        self.descending = False
        self._pages: OrderedDict[int, list[dict[str, Any] | None]] = OrderedDict()
        self.pages_fetched = 0  # for tests and the bench: proves paging is lazy
        self._count = 0
        self.exact = loader is None  # False while the row count is provisional
        if loader is None:
            self._count = self._query_count()
        else:
            self._request_head()

    # -- query -------------------------------------------------------------------------------
    @property
    def filters(self) -> list[str]:
        return self.base_filters + self.extra_filters

    def _query_count(self) -> int:
        return self.lib.count(self.filters, self.search or None)

    def set_search(self, text: str) -> None:
        text = text.strip()
        if text != self.search:
            self.search = text
            self.reload()

    def set_extra_filters(self, filters: Sequence[str]) -> None:
        if list(filters) != self.extra_filters:
            self.extra_filters = list(filters)
            self.reload()

    def reload(self) -> None:
        """Query again from scratch (new search, filter or order): the view resets."""
        self.beginResetModel()
        self._generation += 1
        self._pages.clear()
        self._pending.clear()
        self._stale.clear()
        self._ids = None
        self._ids_requested = False
        self._recount = False
        if self.loader is None:
            self._count = self._query_count()
        else:
            self.loader.forget_before(self._generation)
            self.exact = False  # the old count stands in until the loader answers
        self.endResetModel()
        if self.loader is not None:
            self._request_head()

    def refresh(self) -> None:
        """Pick up rows written by a background job without resetting the view.

        The scroll position and the selected rows stay; the cells are re-read. Used while a
        scan or analysis is running, so the table fills in as results arrive. With a loader the
        count is checked there too (the old id list serves until a new one arrives).
        """
        if self.loader is not None:
            self._stale = set(self._pages)  # shown until the fresh page arrives
            if self._ids_requested:  # that read may predate the job's last commit
                self._recount = True
            else:
                self._request_ids(known=None if self._ids is None else len(self._ids))
            self._all_changed()
            return
        new_count = self._query_count()
        if self._ids is not None and len(self._ids) != new_count:
            self._ids = None  # read again on demand
        self._pages.clear()
        self._set_count(new_count)
        self._all_changed()

    def _set_count(self, new_count: int) -> None:
        old = self._count
        if new_count > old:
            self.beginInsertRows(QModelIndex(), old, new_count - 1)
            self._count = new_count
            self.endInsertRows()
        elif new_count < old:
            self.beginRemoveRows(QModelIndex(), new_count, old - 1)
            self._count = new_count
            self.endRemoveRows()

    def _all_changed(self) -> None:
        if self._count:
            self.dataChanged.emit(self.index(0, 0), self.index(self._count - 1, len(COLUMNS) - 1))

    # -- paging ------------------------------------------------------------------------------
    def _order(self) -> dict[str, Any]:
        return {
            "filters": self.filters,
            "search": self.search or None,
            "order_by": self.order_by,
            "descending": self.descending,
        }

    def _reader(self, number: int) -> Callable[[Library], list[Any]] | None:
        """How to read page `number`: by its slice of the id list once that is read, by
        LIMIT/OFFSET near the top; None means wait for the id list."""
        start = number * PAGE_SIZE
        ids = self._ids
        if ids is not None and start < len(ids):
            chunk = ids[start : start + PAGE_SIZE]
            return lambda lib: lib.tracks_by_id(chunk)
        if number < DIRECT_PAGES:
            args = {**self._order(), "limit": PAGE_SIZE, "offset": start}
            return lambda lib: lib.tracks(**args)
        return None

    def _request_head(self) -> None:
        """The first page and the id list (the loader serves the page first)."""
        self._request_ids()
        self._request(0)

    def _request_ids(self, known: int | None = None) -> None:
        """Read the ordered id list on the loader; with `known`, a refresh's: the list is only
        read again when the count differs (the loader then answers with the count itself)."""
        if self._ids_requested or self.loader is None:
            return
        self._ids_requested = True
        order = self._order()

        def read(lib: Library) -> list[int] | int:
            if known is not None and lib.count(order["filters"], order["search"]) == known:
                return known
            return lib.track_ids(**order)

        self._forget_dropped(self.loader.request(self._generation, IDS, read))

    def _forget_dropped(self, dropped: list[int]) -> None:
        for key in dropped:
            self._pending.discard(key)
            if key == IDS:
                self._ids_requested = False
                self._request_ids()  # the count depends on it: ask again (served after pages)

    def _store(self, number: int, page: list[dict[str, Any] | None]) -> None:
        self._pages[number] = page
        self._pages.move_to_end(number)
        self._stale.discard(number)
        while len(self._pages) > MAX_PAGES:
            self._pages.popitem(last=False)

    def _page(self, number: int) -> list[dict[str, Any] | None]:
        """A page now (read on this thread if it is not cached, or cached but stale)."""
        page = self._pages.get(number)
        if page is None or number in self._stale:
            reader = self._reader(number)
            if reader is None:
                self._ids = self.lib.track_ids(**self._order())
                reader = self._reader(number)
            page = reader(self.lib) if reader is not None else []
            self.pages_fetched += 1
            self._store(number, page)
        else:
            self._pages.move_to_end(number)
        return page

    def _request(self, number: int) -> None:
        if number in self._pending or self.loader is None:
            return
        reader = self._reader(number)
        if reader is None:
            self._request_ids()  # the view asks again when the list has arrived
            return
        self._pending.add(number)
        self._forget_dropped(self.loader.request(self._generation, number, reader))

    def _on_loaded(self, generation: int, key: int, result: Any) -> None:
        if generation != self._generation:
            return
        if key == IDS:
            self._ids_requested = False
            if result is not None and not isinstance(result, int):  # int: a refresh, no change
                changed = self._ids is not None
                self._ids = result
                if changed:  # a refresh: rows came or went, so every page moved
                    self._stale = set(self._pages)
                self._set_count(len(result))
                self._all_changed()
                self._counted()
            if self._recount:
                self._recount = False
                self._request_ids(known=None if self._ids is None else len(self._ids))
            return
        self._pending.discard(key)
        if result is None:
            return
        self.pages_fetched += 1
        self._store(key, result)
        if key == 0 and not self.exact:
            if len(result) < PAGE_SIZE:  # the whole result: the count is known
                self._set_count(len(result))
                self._counted()
            elif self._count < len(result):
                self._set_count(len(result))  # at least a page; the id list gives the rest
        first = key * PAGE_SIZE
        last = min(self._count, first + PAGE_SIZE) - 1
        if last >= first:
            self.dataChanged.emit(self.index(first, 0), self.index(last, len(COLUMNS) - 1))

    def _counted(self) -> None:
        if not self.exact:
            self.exact = True
            self.counted.emit()

    def _cached(self, row: int) -> dict[str, Any] | None:
        """The row if its page is loaded (asking the loader for it, or a fresher copy)."""
        if self.loader is None:
            return self.track(row)
        if not 0 <= row < self._count:
            return None
        number = row // PAGE_SIZE
        page = self._pages.get(number)
        if page is None or number in self._stale:
            self._request(number)
        if page is None:
            return None
        offset = row % PAGE_SIZE
        return page[offset] if offset < len(page) else None

    def track(self, row: int) -> dict[str, Any] | None:
        """The row's track dict (None past the end, e.g. while rows are being removed)."""
        if not 0 <= row < self._count:
            return None
        page = self._page(row // PAGE_SIZE)
        offset = row % PAGE_SIZE
        return page[offset] if offset < len(page) else None

    def track_id(self, row: int) -> int | None:
        track = self.track(row)
        return None if track is None else int(track["id"])

    # -- Qt model API ------------------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt signature
        return 0 if parent.isValid() else self._count

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][1]
        return None

    def data(self, index: Index, role: int = DISPLAY) -> Any:
        role = int(role)
        if role not in ANSWERED or not index.isValid():
            return None
        track = self._cached(index.row())
        if track is None:
            if role == DISPLAY and index.column() == 0:
                return "…"  # loading
            return None
        key = COLUMNS[index.column()][0]
        if role == DISPLAY:
            return self._display(track, key)
        if role == USER:
            return track["id"]
        if role == TOOLTIP:
            if track.get("error"):
                return f"{track['path']}\n{track['error']}"
            return track["path"]
        if role == ALIGNMENT:
            return RIGHT_ALIGNED if key in NUMERIC else None
        if role == FOREGROUND:
            if not (track.get("missing") or track.get("status") == "error"):
                return None
            palette = QApplication.palette()
            return QBrush(palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text))
        if track.get("missing"):  # FONT
            font = QFont()
            font.setItalic(True)
            return font
        return None

    @staticmethod
    def _display(track: dict[str, Any], key: str) -> str:
        if key == "title":
            return formatting.track_title(track)
        if key == "duration":
            return formatting.duration(track.get("duration"))
        if key == "status":
            if track.get("missing"):
                return "Missing"
            return STATUS_TEXT.get(track.get("status") or "", track.get("status") or "")
        value = track.get(key)
        return "" if value is None else str(value)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        key = COLUMNS[column][0]
        descending = order == Qt.SortOrder.DescendingOrder
        if (key, descending) != (self.order_by, self.descending):
            self.order_by = key
            self.descending = descending
            self.reload()

    def flags(self, index: Index) -> Qt.ItemFlag:
        base = super().flags(index)
        return base | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else base

    def mimeTypes(self) -> list[str]:
        return [mime.TRACK_IDS, "text/uri-list"]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:
        rows = sorted({i.row() for i in indexes})
        tracks = [t for r in rows if (t := self.track(r)) is not None]
        return mime.track_mime([t["id"] for t in tracks], [t["path"] for t in tracks])

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction
