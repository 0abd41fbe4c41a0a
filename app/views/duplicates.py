"""Duplicates: groups of files that are the same recording (another format, bitrate or copy).

Why grouped: the decision ("keep the FLAC, drop the MP3") is made per group, so each group
is one expandable node with its files, their format and path side by side.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .. import formatting

ID = Qt.ItemDataRole.UserRole


class DuplicatesView(QWidget):
    play_requested = Signal(int)
    menu_requested = Signal(QPoint)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Title", "Artist", "Album", "Format", "Time", "File"])
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setAlternatingRowColors(True)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(
            lambda pos: self.menu_requested.emit(self.tree.viewport().mapToGlobal(pos))
        )
        self.tree.itemActivated.connect(self._activated)
        for column, width in enumerate((240, 160, 180, 70, 60)):
            self.tree.setColumnWidth(column, width)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(self.tree, 1)
        self.groups: list[list[dict[str, Any]]] = []

    def show_message(self, text: str) -> None:
        self.tree.clear()
        self.summary.setText(text)

    def show_groups(self, groups: list[list[dict[str, Any]]], untrained: bool = False) -> None:
        self.groups = groups
        self.tree.clear()
        for n, group in enumerate(groups, 1):
            head = QTreeWidgetItem(
                self.tree, [f"Group {n}: {formatting.plural(len(group), 'file')}"]
            )
            head.setFirstColumnSpanned(True)
            for track in group:
                item = QTreeWidgetItem(
                    head,
                    [
                        formatting.track_title(track),
                        track.get("artist") or "",
                        track.get("album") or "",
                        (track.get("codec") or "").upper(),
                        formatting.duration(track.get("duration")),
                        track.get("path") or "",
                    ],
                )
                item.setData(0, ID, int(track["id"]))
                item.setToolTip(5, track.get("path") or "")
        self.tree.expandAll()
        text = (
            f"{formatting.plural(len(groups), 'group')} of files that sound like the same "
            "recording."
            if groups
            else "No duplicates found."
        )
        if untrained:
            text += (
                " The active model is untrained (similarity only): near-identical scores "
                "are common with it, so check each group before deleting anything."
            )
        self.summary.setText(text)

    def selected_ids(self) -> list[int]:
        ids = []
        for item in self.tree.selectedItems():
            value = item.data(0, ID)
            if value is not None:
                ids.append(int(value))
        return ids

    def _activated(self, item: QTreeWidgetItem, _column: int) -> None:
        value = item.data(0, ID)
        if value is not None:
            self.play_requested.emit(int(value))
