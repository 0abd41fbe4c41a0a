"""One playlist's items as an editable Qt model: reorder by drag, drop tracks in, remove.

Why a separate model: playlists are ordered and small (hundreds, not 100,000), so the whole
list is loaded, and every edit goes straight to the engine's playlist functions (one
transaction each) and is then re-read, so what is shown is always what is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from musicssl.engine import playlists
from musicssl.engine.library import Library
from PySide6.QtCore import QAbstractTableModel, QMimeData, QModelIndex, QPersistentModelIndex, Qt

from .. import formatting, mime

COLUMNS = [
    ("position", "#"),
    ("title", "Title"),
    ("artist", "Artist"),
    ("album", "Album"),
    ("duration", "Time"),
]

Index = QModelIndex | QPersistentModelIndex


class PlaylistItemsModel(QAbstractTableModel):
    def __init__(self, lib: Library, parent=None) -> None:
        super().__init__(parent)
        self.lib = lib
        self.playlist_id: int | None = None
        self.items: list[dict[str, Any]] = []

    def set_playlist(self, playlist_id: int | None) -> None:
        self.playlist_id = playlist_id
        self.reload()

    def reload(self) -> None:
        self.beginResetModel()
        try:
            self.items = (
                [] if self.playlist_id is None else playlists.items(self.lib.db, self.playlist_id)
            )
        except playlists.PlaylistNotFound:
            self.playlist_id = None
            self.items = []
        self.endResetModel()

    # -- edits (each one transaction in the engine) --------------------------------------------
    def remove_positions(self, positions: Sequence[int]) -> None:
        if self.playlist_id is None or not positions:
            return
        playlists.remove_positions(self.lib.db, self.playlist_id, positions)
        self.reload()

    def move(self, positions: Sequence[int], to_position: int) -> list[int]:
        """Move items to just before the item now at `to_position` (len: to the end)."""
        if self.playlist_id is None or not positions:
            return []
        moved = playlists.move(self.lib.db, self.playlist_id, positions, to_position)
        self.reload()
        return moved

    def insert_tracks(self, track_ids: Sequence[int], position: int | None = None) -> list[int]:
        if self.playlist_id is None or not track_ids:
            return []
        added = playlists.add_tracks(self.lib.db, self.playlist_id, track_ids, position)
        self.reload()
        return added

    # -- Qt model API --------------------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt signature
        return 0 if parent.isValid() else len(self.items)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][1]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.items):
            return None
        item = self.items[index.row()]
        key = COLUMNS[index.column()][0]
        if role == Qt.ItemDataRole.DisplayRole:
            if key == "position":
                return str(item["position"] + 1)
            if key == "title":
                return formatting.track_title(item)
            if key == "duration":
                return formatting.duration(item.get("duration"))
            return item.get(key) or ""
        if role == Qt.ItemDataRole.UserRole:
            return item["track_id"]
        if role == Qt.ItemDataRole.ToolTipRole:
            return item["path"]
        if role == Qt.ItemDataRole.TextAlignmentRole and key in ("position", "duration"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        base = super().flags(index)
        if index.isValid():
            return base | Qt.ItemFlag.ItemIsDragEnabled
        return base | Qt.ItemFlag.ItemIsDropEnabled

    def supportedDropActions(self) -> Qt.DropAction:
        return Qt.DropAction.MoveAction | Qt.DropAction.CopyAction

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.MoveAction

    def mimeTypes(self) -> list[str]:
        return [mime.PLAYLIST_POSITIONS, mime.TRACK_IDS]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:
        rows = sorted({i.row() for i in indexes if i.isValid()})
        ids = [self.items[r]["track_id"] for r in rows]
        return mime.positions_mime(self.playlist_id or 0, rows, ids)

    def canDropMimeData(self, data, action, row, column, parent) -> bool:  # noqa: N802, ANN001
        return self.playlist_id is not None and (
            data.hasFormat(mime.PLAYLIST_POSITIONS) or data.hasFormat(mime.TRACK_IDS)
        )

    def dropMimeData(self, data, action, row, column, parent) -> bool:  # noqa: ANN001
        """Reorder (positions from this playlist) or insert (track ids from anywhere)."""
        if self.playlist_id is None:
            return False
        if row < 0:
            row = parent.row() if parent.isValid() else len(self.items)
        moved = mime.positions(data)
        if moved is not None and moved[0] == self.playlist_id:
            self.move(moved[1], row)
            return False  # the move is done: the view must not also delete the "source" rows
        ids = mime.track_ids(data)
        if not ids:
            return False
        self.insert_tracks(ids, row)
        return False
