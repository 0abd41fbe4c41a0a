"""Table views for tracks: shared keyboard/selection/drag behaviour, and the library page.

Why one base class: the library, a playlist, similar results and duplicates are all "a table
of tracks" where Enter plays, right-click offers the same track actions, and a drag carries
track ids to a playlist; the window connects to the same signals for all of them.
"""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QStackedLayout,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .. import formatting
from ..models.track_table import COLUMNS, TrackTableModel

FILTER_DELAY_MS = 150  # typing pauses shorter than this do not re-query


class TrackTableView(QTableView):
    """A table whose rows are tracks (the model returns the track id for Qt.UserRole)."""

    play_requested = Signal(int)  # track id
    menu_requested = Signal(QPoint)  # global position
    selection_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setAlternatingRowColors(True)
        self.setShowGrid(False)
        self.setWordWrap(False)
        self.setTabKeyNavigation(False)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        vh = self.verticalHeader()
        vh.setVisible(False)
        vh.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vh.setDefaultSectionSize(self.fontMetrics().height() + 8)
        hh = self.horizontalHeader()
        hh.setSectionsMovable(True)
        hh.setHighlightSections(False)
        hh.setStretchLastSection(True)
        hh.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(
            lambda pos: self.menu_requested.emit(self.viewport().mapToGlobal(pos))
        )
        self.doubleClicked.connect(self._play_index)

    def setModel(self, model) -> None:  # noqa: N802, ANN001 - Qt API
        super().setModel(model)
        self.selectionModel().selectionChanged.connect(lambda *_: self.selection_changed.emit())
        self.selectionModel().currentRowChanged.connect(lambda *_: self.selection_changed.emit())

    def _play_index(self, index: QModelIndex) -> None:
        track_id = index.siblingAtColumn(0).data(Qt.ItemDataRole.UserRole)
        if track_id is not None:
            self.play_requested.emit(int(track_id))

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.currentIndex().isValid():
            self._play_index(self.currentIndex())
            return
        super().keyPressEvent(event)

    def selected_rows(self) -> list[int]:
        model = self.selectionModel()
        return [] if model is None else sorted(i.row() for i in model.selectedRows())

    def selected_ids(self) -> list[int]:
        model = self.model()
        ids = []
        for row in self.selected_rows():
            value = model.index(row, 0).data(Qt.ItemDataRole.UserRole)
            if value is not None:
                ids.append(int(value))
        return ids

    def current_id(self) -> int | None:
        index = self.currentIndex()
        if not index.isValid():
            ids = self.selected_ids()
            return ids[0] if ids else None
        value = index.siblingAtColumn(0).data(Qt.ItemDataRole.UserRole)
        return None if value is None else int(value)

    def select_rows(self, rows: list[int]) -> None:
        """Select these rows (and make the first current), as a user click would."""
        model = self.selectionModel()
        flags = QItemSelectionModel.SelectionFlag
        model.clearSelection()
        for i, row in enumerate(rows):
            index = self.model().index(row, 0)
            if i == 0:
                model.setCurrentIndex(index, flags.Select | flags.Rows)
            else:
                model.select(index, flags.Select | flags.Rows)


class LibraryView(QWidget):
    """Filter box + the paged track table (+ an "active tag" chip and a no-match message)."""

    def __init__(self, model: TrackTableModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter by title, artist, album or tag  (Ctrl+F)")
        self.filter.setClearButtonEnabled(True)
        self.tag_chip = QToolButton()
        self.tag_chip.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.tag_chip.setToolTip("Show all tracks again")
        self.tag_chip.setVisible(False)
        self.tag_chip.clicked.connect(self.clear_tag)
        self.summary = QLabel()
        top = QHBoxLayout()
        top.addWidget(self.filter, 1)
        top.addWidget(self.tag_chip)
        top.addWidget(self.summary)
        self.table = TrackTableView()
        self.table.setModel(model)
        # The indicator first: enabling sorting sorts by the indicator's column at once.
        self.table.horizontalHeader().setSortIndicator(1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self._set_default_widths()
        self.no_match = QLabel()
        self.no_match.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.no_match.setWordWrap(True)
        self.stack = QStackedLayout()
        self.stack.addWidget(self.table)
        self.stack.addWidget(self.no_match)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addLayout(self.stack, 1)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(FILTER_DELAY_MS)
        self._timer.timeout.connect(self.apply_filter)
        self.filter.textChanged.connect(lambda _t: self._timer.start())
        self.filter.returnPressed.connect(self.apply_filter)
        model.modelReset.connect(self.update_summary)
        model.rowsInserted.connect(self.update_summary)
        model.rowsRemoved.connect(self.update_summary)
        self.tag: str | None = None
        self.update_summary()

    def _set_default_widths(self) -> None:
        widths = {
            "title": 230,
            "artist": 150,
            "album": 170,
            "genre": 90,
            "year": 50,
            "duration": 55,
            "codec": 60,
        }
        for column, (key, _) in enumerate(COLUMNS):
            if key in widths:
                self.table.setColumnWidth(column, widths[key])

    def apply_filter(self) -> None:
        self._timer.stop()
        self.model.set_search(self.filter.text())

    def set_tag(self, tag: str | None) -> None:
        """Browse by tag: only tracks carrying it (file, user, or a confident auto tag)."""
        self.tag = tag
        self.tag_chip.setVisible(tag is not None)
        self.tag_chip.setText(f"Tag: {tag}  ✕" if tag else "")
        self.model.set_extra_filters([f"tag={tag}"] if tag else [])

    def clear_tag(self) -> None:
        self.set_tag(None)

    def update_summary(self) -> None:
        n = self.model.rowCount()
        self.summary.setText(formatting.plural(n, "track"))
        if n == 0 and (self.model.search or self.tag):
            what = f"“{self.model.search}”" if self.model.search else f"the tag “{self.tag}”"
            self.no_match.setText(f"No tracks match {what}.")
            self.stack.setCurrentWidget(self.no_match)
        else:
            self.stack.setCurrentWidget(self.table)
