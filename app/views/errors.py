"""Missing & errors: unreadable files and folders (with the reason), and files gone from disk.

Why its own page: "12 files could not be read" is only useful if the user can see which
ones and why (permissions, corrupt data, a broken link), without digging through logs.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .. import formatting
from ..models.track_table import TrackTableModel
from .track_views import TrackTableView


class ErrorsView(QWidget):
    def __init__(self, missing_model: TrackTableModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.errors = QTableWidget(0, 3)
        self.errors.setHorizontalHeaderLabels(["File or folder", "Kind", "Problem"])
        self.errors.verticalHeader().setVisible(False)
        self.errors.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.errors.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.errors.setAlternatingRowColors(True)
        self.errors.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.errors.horizontalHeader().setStretchLastSection(True)
        self.errors.setColumnWidth(0, 420)
        self.missing_label = QLabel()
        self.missing_model = missing_model
        self.missing = TrackTableView()
        self.missing.setModel(missing_model)
        self.missing.setColumnWidth(0, 260)
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.summary)
        tl.addWidget(self.errors)
        bottom = QWidget()
        bl = QVBoxLayout(bottom)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addWidget(self.missing_label)
        bl.addWidget(self.missing)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(bottom)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(split)

    def show_errors(self, rows: list[dict[str, Any]]) -> None:
        self.errors.setRowCount(len(rows))
        for r, row in enumerate(rows):
            kind = "File" if row.get("kind") == "track" else "Folder or link"
            for c, text in enumerate((row.get("path"), kind, row.get("error"))):
                item = QTableWidgetItem(str(text or ""))
                item.setToolTip(str(text or ""))
                self.errors.setItem(r, c, item)
        files = sum(1 for r in rows if r.get("kind") == "track")
        folders = len(rows) - files
        if rows:
            parts = []
            if files:
                parts.append(f"{formatting.plural(files, 'file')} could not be read")
            if folders:
                parts.append(
                    f"{formatting.plural(folders, 'folder or link', 'folders or links')} "
                    "could not be opened"
                )
            self.summary.setText(
                "; ".join(parts) + ". Fix them on disk and rescan (File → Rescan)."
            )
        else:
            self.summary.setText("Every file in the library could be read.")
        self.missing_model.reload()
        n = self.missing_model.rowCount()
        self.missing_label.setText(
            f"{formatting.plural(n, 'track')} missing from disk: their tags and playlist "
            "entries are kept until the files come back."
            if n
            else "No files are missing."
        )
