"""One playlist: its tracks in order, reorder by dragging, Delete removes, export/rename/delete.

Why edits go through the model straight to the engine: the stored order is the truth (the
CLI and exports read it), so the view never keeps its own copy of the order.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStackedLayout,
    QVBoxLayout,
    QWidget,
)

from .. import formatting
from ..models.playlist_items import PlaylistItemsModel
from .track_views import TrackTableView


class PlaylistTable(TrackTableView):
    """Drag to reorder; drops of library tracks insert them where they land."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)
        self.setDragDropOverwriteMode(False)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)


class PlaylistView(QWidget):
    play_requested = Signal(int)
    export_requested = Signal(int)
    rename_requested = Signal(int)
    delete_requested = Signal(int)
    changed = Signal()  # items were added, moved or removed (sidebar counts change)

    def __init__(self, model: PlaylistItemsModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.heading = QLabel()
        font = self.heading.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.2)
        self.heading.setFont(font)
        self.info = QLabel()
        self.play_button = QPushButton("Play")
        self.play_button.clicked.connect(self._play)
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(lambda: self._emit(self.export_requested))
        self.rename_button = QPushButton("Rename…")
        self.rename_button.clicked.connect(lambda: self._emit(self.rename_requested))
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(lambda: self._emit(self.delete_requested))
        top = QHBoxLayout()
        top.addWidget(self.heading)
        top.addWidget(self.info)
        top.addStretch(1)
        for b in (self.play_button, self.export_button, self.rename_button, self.delete_button):
            top.addWidget(b)
        self.table = PlaylistTable()
        self.table.setModel(model)
        for column, width in enumerate((40, 260, 180, 200, 60)):
            self.table.setColumnWidth(column, width)
        self.table.play_requested.connect(self.play_requested)
        self.remove_action = QAction("Remove from playlist", self.table)
        self.remove_action.setShortcuts(
            [QKeySequence.StandardKey.Delete, QKeySequence("Backspace")]
        )
        self.remove_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.remove_action.triggered.connect(self.remove_selected)
        self.table.addAction(self.remove_action)
        self.empty = QLabel("This playlist is empty.\nDrag tracks here from the library.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setAcceptDrops(False)
        self.stack = QStackedLayout()
        self.stack.addWidget(self.table)
        self.stack.addWidget(self.empty)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addLayout(self.stack, 1)
        model.modelReset.connect(self._on_reset)

    def show_playlist(self, playlist: dict[str, Any]) -> None:
        self._playlist = playlist
        self.heading.setText(playlist["name"])
        self.model.set_playlist(playlist["id"])

    def _on_reset(self) -> None:
        items = self.model.items
        total = sum(i.get("duration") or 0.0 for i in items)
        self.info.setText(f"{formatting.plural(len(items), 'track')}, {formatting.duration(total)}")
        # An empty playlist still shows the table, so tracks can be dropped onto it.
        self.stack.setCurrentWidget(self.table)
        self.table.setToolTip("" if items else self.empty.text())
        self.play_button.setEnabled(bool(items))

    def _emit(self, signal) -> None:  # noqa: ANN001
        if self.model.playlist_id is not None:
            signal.emit(self.model.playlist_id)

    def _play(self) -> None:
        ids = self.table.selected_ids() or [i["track_id"] for i in self.model.items[:1]]
        if ids:
            self.play_requested.emit(ids[0])

    def remove_selected(self) -> None:
        rows = self.table.selected_rows()
        if rows:
            self.model.remove_positions(rows)
            self.changed.emit()
            if self.model.items:
                self.table.select_rows([min(rows[0], len(self.model.items) - 1)])

    def move_selected(self, to_position: int) -> None:
        rows = self.table.selected_rows()
        if rows:
            moved = self.model.move(rows, to_position)
            self.table.select_rows(moved)
