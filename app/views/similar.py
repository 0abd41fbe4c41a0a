"""Find-similar results: the seeds, the options that shape the list, and the ranked tracks.

Why options live next to the results: "no more than 2 per artist" or "not from the same
album" are what turn a raw nearest-neighbour list into a useful playlist, and the user tunes
them while looking at the result. Changing an option re-runs the query (on the query thread).
"""

from __future__ import annotations

from collections.abc import Sequence

from musicssl.engine.similar import Result
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QStackedLayout,
    QVBoxLayout,
    QWidget,
)

from ..models.results import ResultsModel
from .track_views import TrackTableView


class SimilarView(QWidget):
    search_requested = Signal(list, dict)  # seed ids, options for Library.similar
    play_requested = Signal(int)
    save_requested = Signal(list, str)  # track ids, suggested playlist name

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.seeds: list[int] = []
        self.seed_label = ""
        self.heading = QLabel()
        self.heading.setWordWrap(True)
        font = self.heading.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.2)
        self.heading.setFont(font)
        self.count = QSpinBox()
        self.count.setRange(1, 500)
        self.count.setValue(25)
        self.count.setToolTip("How many tracks to find")
        self.per_artist = QSpinBox()
        self.per_artist.setRange(0, 50)
        self.per_artist.setSpecialValueText("any")
        self.per_artist.setToolTip("At most this many tracks by one artist (any: no limit)")
        self.per_album = QSpinBox()
        self.per_album.setRange(0, 50)
        self.per_album.setSpecialValueText("any")
        self.per_album.setToolTip("At most this many tracks from one album (any: no limit)")
        self.exclude_album = QCheckBox("Skip the seed's album")
        self.play_button = QPushButton("Play")
        self.play_button.clicked.connect(self._play)
        self.save_button = QPushButton("Save as playlist…")
        self.save_button.clicked.connect(self._save)
        head = QHBoxLayout()
        head.addWidget(self.heading, 1)
        head.addWidget(self.play_button)
        head.addWidget(self.save_button)
        options = QHBoxLayout()
        for label, widget in (
            ("Tracks", self.count),
            ("Max per artist", self.per_artist),
            ("Max per album", self.per_album),
        ):
            options.addWidget(QLabel(label))
            options.addWidget(widget)
            options.addSpacing(6)
        options.addWidget(self.exclude_album)
        options.addStretch(1)

        self.model = ResultsModel(self)
        self.table = TrackTableView()
        self.table.setModel(self.model)
        self.table.setColumnWidth(0, 70)
        self.table.setColumnWidth(1, 260)
        self.table.setColumnWidth(2, 180)
        self.table.play_requested.connect(self.play_requested)
        self.message = QLabel()
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.stack = QStackedLayout()
        self.stack.addWidget(self.table)
        self.stack.addWidget(self.message)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(head)
        layout.addLayout(options)
        layout.addLayout(self.stack, 1)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(self.search)
        for spin in (self.count, self.per_artist, self.per_album):
            spin.valueChanged.connect(lambda _v: self._debounce.start())
        self.exclude_album.toggled.connect(lambda _v: self._debounce.start())
        self._update_buttons()

    def options(self) -> dict:
        return {
            "n": self.count.value(),
            "max_per_artist": self.per_artist.value() or None,
            "max_per_album": self.per_album.value() or None,
            "exclude_same_album": self.exclude_album.isChecked(),
        }

    def set_seeds(self, seeds: Sequence[int], label: str) -> None:
        self.seeds = [int(s) for s in seeds]
        self.seed_label = label
        self.heading.setText(f"Similar to {label}")
        self.search()

    def search(self) -> None:
        self._debounce.stop()
        if self.seeds:
            self.show_message("Searching…")
            self.search_requested.emit(list(self.seeds), self.options())

    def show_results(self, results: Sequence[Result]) -> None:
        self.model.set_results(results)
        if results:
            self.stack.setCurrentWidget(self.table)
        else:
            self.show_message("No similar tracks found with these options.")
        self._update_buttons()

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.stack.setCurrentWidget(self.message)
        self._update_buttons()

    def _update_buttons(self) -> None:
        has = bool(self.model.results) and self.stack.currentWidget() is self.table
        self.play_button.setEnabled(has)
        self.save_button.setEnabled(has)

    def _play(self) -> None:
        ids = self.table.selected_ids() or [r.track_id for r in self.model.results[:1]]
        if ids:
            self.play_requested.emit(ids[0])

    def _save(self) -> None:
        # The seeds open the playlist: "more like this" starts with "this".
        ids = list(self.seeds) + [r.track_id for r in self.model.results]
        if self.model.results:
            self.save_requested.emit(ids, f"Similar to {self.seed_label}")
