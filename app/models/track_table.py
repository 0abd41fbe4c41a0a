"""The library table as a lazily paged Qt model: 100,000 tracks without 100,000 widgets.

Why paged: the view only ever shows a screenful, so rows are fetched from the facade in pages
of PAGE_SIZE (`Library.tracks(limit, offset)`) when the view first asks for them, and kept in a
small LRU cache. Sorting and filtering are pushed into the query (ORDER BY / WHERE in SQLite)
rather than done in Python, so a click on a header costs one page query, not a full load.

With a `PageLoader` (the window always passes one) pages are fetched on a worker thread: a row
not loaded yet shows a placeholder for a moment, and a refresh while a job runs keeps showing
the old values until the new page arrives (no flicker). Without one, pages are read on the
calling thread, which is simpler for scripts and tests. `track(row)` always answers at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from musicssl.engine.library import Library
from PySide6.QtCore import (
    QAbstractTableModel,
    QMimeData,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
)
from PySide6.QtGui import QBrush, QFont, QPalette
from PySide6.QtWidgets import QApplication

from .. import formatting, mime
from .page_loader import PageLoader

PAGE_SIZE = 200
MAX_PAGES = 64  # cached pages (12,800 rows) before the least recently used is dropped

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

Index = QModelIndex | QPersistentModelIndex


class TrackTableModel(QAbstractTableModel):
    """Rows are tracks matching `filters` + `search`, ordered by one column."""

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
        if loader is not None:
            loader.loaded.connect(self._on_loaded)
        self.base_filters = list(filters)
        self.extra_filters: list[str] = []
        self.search = ""
        self.order_by = "artist"
        self.descending = False
        self._count = 0
        self._pages: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self.pages_fetched = 0  # for tests and the bench: proves paging is lazy
        self._count = self._query_count()

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
        if self.loader is not None:
            self.loader.forget_before(self._generation)
        self._count = self._query_count()
        self.endResetModel()

    def refresh(self) -> None:
        """Pick up rows written by a background job without resetting the view.

        The scroll position and the selected rows stay; the cells are re-read. Used while a
        scan or analysis is running, so the table fills in as results arrive.
        """
        new_count = self._query_count()
        if self.loader is None:
            self._pages.clear()
        else:
            self._stale = set(self._pages)  # shown until the fresh page arrives
        old = self._count
        if new_count > old:
            self.beginInsertRows(QModelIndex(), old, new_count - 1)
            self._count = new_count
            self.endInsertRows()
        elif new_count < old:
            self.beginRemoveRows(QModelIndex(), new_count, old - 1)
            self._count = new_count
            self.endRemoveRows()
        if self._count:
            self.dataChanged.emit(self.index(0, 0), self.index(self._count - 1, len(COLUMNS) - 1))

    # -- paging ------------------------------------------------------------------------------
    def _query_args(self, number: int) -> dict[str, Any]:
        return {
            "filters": self.filters,
            "search": self.search or None,
            "order_by": self.order_by,
            "descending": self.descending,
            "limit": PAGE_SIZE,
            "offset": number * PAGE_SIZE,
        }

    def _store(self, number: int, page: list[dict[str, Any]]) -> None:
        self._pages[number] = page
        self._pages.move_to_end(number)
        self._stale.discard(number)
        while len(self._pages) > MAX_PAGES:
            self._pages.popitem(last=False)

    def _page(self, number: int) -> list[dict[str, Any]]:
        """A page now (read on this thread if it is not cached, or cached but stale)."""
        page = self._pages.get(number)
        if page is None or number in self._stale:
            page = self.lib.tracks(**self._query_args(number))
            self.pages_fetched += 1
            self._store(number, page)
        else:
            self._pages.move_to_end(number)
        return page

    def _request(self, number: int) -> None:
        if number in self._pending or self.loader is None:
            return
        self._pending.add(number)
        for dropped in self.loader.request(self._generation, number, self._query_args(number)):
            self._pending.discard(dropped)

    def _on_loaded(self, generation: int, number: int, rows: Any) -> None:
        if generation != self._generation:
            return
        self._pending.discard(number)
        if rows is None:
            return
        self.pages_fetched += 1
        self._store(number, rows)
        first = number * PAGE_SIZE
        last = min(self._count, first + PAGE_SIZE) - 1
        if last >= first:
            self.dataChanged.emit(self.index(first, 0), self.index(last, len(COLUMNS) - 1))

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

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        track = self._cached(index.row())
        if track is None:
            if role == Qt.ItemDataRole.DisplayRole and index.column() == 0:
                return "…"  # loading
            return None
        key = COLUMNS[index.column()][0]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(track, key)
        if role == Qt.ItemDataRole.UserRole:
            return track["id"]
        if role == Qt.ItemDataRole.ToolTipRole:
            if track.get("error"):
                return f"{track['path']}\n{track['error']}"
            return track["path"]
        if role == Qt.ItemDataRole.TextAlignmentRole and key in ("year", "duration"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and (
            track.get("missing") or track.get("status") == "error"
        ):
            palette = QApplication.palette()
            return QBrush(palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text))
        if role == Qt.ItemDataRole.FontRole and track.get("missing"):
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
