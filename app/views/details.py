"""The details pane: one track's metadata and tags, with accept/reject and user-tag editing.

Why tags are split by source: a tag read from the file, a tag the user set (a label for
fine-tuning, which may be an explicit "no"), and a tag the model guessed (a probability) mean
different things and are edited differently. With an untrained model (the random-init
baseline) the pane says so and shows no auto tags, so guesses are never mistaken for facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QCompleter,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .. import formatting

STATUS_TEXT = {
    "new": "Waiting for analysis",
    "analyzed": "Analysed",
    "error": "Could not be read",
}


def _heading(text: str) -> QLabel:
    label = QLabel(text)
    font = QFont(label.font())
    font.setBold(True)
    label.setFont(font)
    return label


def _muted(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setForegroundRole(label.foregroundRole())
    label.setEnabled(False)  # the palette's disabled text colour: readable in light and dark
    return label


class DetailsPane(QScrollArea):
    """Shows `show_track(track)` / `show_selection(n)`; emits edits, never writes itself."""

    tag_edit = Signal(list, str, object)  # track ids, tag, True / False / None (remove)
    play_requested = Signal(int)
    similar_requested = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setMinimumWidth(240)
        self.model_trained = False
        self.track: dict[str, Any] | None = None
        self.track_ids: list[int] = []
        self.known_tags: list[str] = []
        self.show_nothing()

    # -- public --------------------------------------------------------------------------------
    def set_model_trained(self, trained: bool) -> None:
        self.model_trained = trained
        if self.track is not None:
            self.show_track(self.track)

    def set_known_tags(self, tags: Sequence[str]) -> None:
        self.known_tags = list(tags)

    def show_nothing(self) -> None:
        self.track = None
        self.track_ids = []
        body, layout = self._new_body()
        layout.addStretch(1)
        label = _muted("Select a track to see its details and tags.")
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(label)
        layout.addStretch(2)
        self._set_body(body)

    def show_selection(self, track_ids: Sequence[int]) -> None:
        """Several tracks: only what applies to all of them (adding a tag)."""
        self.track = None
        self.track_ids = [int(t) for t in track_ids]
        body, layout = self._new_body()
        layout.addWidget(_heading(f"{len(self.track_ids):,} tracks selected"))
        layout.addWidget(self._similar_button())
        layout.addSpacing(8)
        layout.addWidget(_heading("Add a tag to all of them"))
        layout.addLayout(self._add_tag_row())
        layout.addStretch(1)
        self._set_body(body)

    def show_track(self, track: dict[str, Any]) -> None:
        """One track (a `Library.track()` dict, with `tags`)."""
        self.track = track
        self.track_ids = [int(track["id"])]
        body, layout = self._new_body()
        title = QLabel(formatting.track_title(track))
        font = QFont(title.font())
        font.setPointSizeF(font.pointSizeF() * 1.35)
        font.setBold(True)
        title.setFont(font)
        title.setWordWrap(True)
        title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(title)
        byline = " — ".join(str(x) for x in (track.get("artist"), track.get("album")) if x)
        if byline:
            sub = QLabel(byline)
            sub.setWordWrap(True)
            layout.addWidget(sub)
        buttons = QHBoxLayout()
        play = QPushButton("Play")
        play.clicked.connect(lambda: self.play_requested.emit(int(track["id"])))
        buttons.addWidget(play)
        buttons.addWidget(self._similar_button())
        buttons.addStretch(1)
        layout.addLayout(buttons)
        layout.addWidget(self._metadata(track))

        tags = track.get("tags") or []
        user = {t["tag"]: t["score"] >= 0.5 for t in tags if t["source"] == "user"}
        layout.addWidget(_heading("Auto tags"))
        layout.addWidget(self._auto_tags([t for t in tags if t["source"] == "auto"], user))
        file_tags = [t["tag"] for t in tags if t["source"] == "file"]
        layout.addWidget(_heading("Tags from the file"))
        layout.addWidget(QLabel(", ".join(file_tags)) if file_tags else _muted("None in the file."))
        layout.addWidget(_heading("Your tags"))
        layout.addWidget(self._user_tags(user))
        layout.addLayout(self._add_tag_row())
        layout.addStretch(1)
        self._set_body(body)

    # -- parts ---------------------------------------------------------------------------------
    def _set_body(self, body: QWidget) -> None:
        """Swap the content; the old one is deleted later, never inside its own event handler
        (pressing Return in the add-tag box rebuilds the pane that holds the box)."""
        old = self.takeWidget()
        self.setWidget(body)
        if old is not None:
            old.hide()
            old.deleteLater()

    def _new_body(self) -> tuple[QWidget, QVBoxLayout]:
        body = QWidget()
        body.setObjectName("detailsBody")
        layout = QVBoxLayout(body)
        layout.setContentsMargins(10, 10, 10, 10)
        layout.setSpacing(6)
        return body, layout

    def _similar_button(self) -> QPushButton:
        button = QPushButton("Find similar")
        button.clicked.connect(lambda: self.similar_requested.emit(list(self.track_ids)))
        return button

    def _metadata(self, track: dict[str, Any]) -> QWidget:
        box = QWidget()
        form = QFormLayout(box)
        form.setContentsMargins(0, 6, 0, 6)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

        def add(label: str, value: Any) -> None:
            if value not in (None, ""):
                field = QLabel(str(value))
                field.setWordWrap(True)
                field.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                form.addRow(label, field)

        add("Album artist", track.get("album_artist"))
        add("Year", track.get("year"))
        add("Track", track.get("track_number"))
        add("Genre", track.get("genre"))
        add("Length", formatting.duration(track.get("duration")))
        fmt = [str(track.get("codec") or "").upper()]
        if track.get("sample_rate"):
            fmt.append(f"{track['sample_rate'] / 1000:g} kHz")
        if track.get("channels"):
            fmt.append({1: "mono", 2: "stereo"}.get(track["channels"], f"{track['channels']} ch"))
        add("Format", " · ".join(f for f in fmt if f))
        status = (
            "Missing from disk"
            if track.get("missing")
            else STATUS_TEXT.get(track.get("status") or "", track.get("status"))
        )
        add("Status", status)
        add("Problem", track.get("error"))
        add("File", track.get("path"))
        return box

    def _auto_tags(self, auto: list[dict[str, Any]], user: dict[str, bool]) -> QWidget:
        if not self.model_trained:
            note = _muted(
                "Untrained model: similarity only. Auto tags appear once a trained model is "
                "active (Tools → Fine-tune and models)."
            )
            note.setObjectName("untrainedNote")
            return note
        if not auto:
            return _muted("No tag passed its confidence threshold for this track.")
        box = QWidget()
        grid = QGridLayout(box)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setColumnStretch(1, 1)
        for row, tag in enumerate(sorted(auto, key=lambda t: -t["score"])):
            name = tag["tag"]
            grid.addWidget(QLabel(name), row, 0)
            bar = QProgressBar()
            bar.setRange(0, 100)
            bar.setValue(int(round(100 * tag["score"])))
            bar.setFormat("%p%")
            bar.setMaximumHeight(14)
            bar.setToolTip(f"Model confidence {tag['score']:.2f}")
            bar.setObjectName(f"confidence:{name}")
            grid.addWidget(bar, row, 1)
            decided = user.get(name)
            accept = QToolButton()
            accept.setText("✓")
            accept.setObjectName(f"accept:{name}")
            accept.setToolTip(f"Yes, this is “{name}” (teaches the model when fine-tuning)")
            accept.setCheckable(True)
            accept.setChecked(decided is True)
            accept.clicked.connect(lambda _c=False, n=name, d=decided: self._decide(n, True, d))
            reject = QToolButton()
            reject.setText("✗")
            reject.setObjectName(f"reject:{name}")
            reject.setToolTip(f"No, this is not “{name}” (a negative label for fine-tuning)")
            reject.setCheckable(True)
            reject.setChecked(decided is False)
            reject.clicked.connect(lambda _c=False, n=name, d=decided: self._decide(n, False, d))
            grid.addWidget(accept, row, 2)
            grid.addWidget(reject, row, 3)
        return box

    def _decide(self, tag: str, answer: bool, current: bool | None) -> None:
        # Clicking the answer already given takes it back.
        self.tag_edit.emit(list(self.track_ids), tag, None if current is answer else answer)

    def _user_tags(self, user: dict[str, bool]) -> QWidget:
        if not user:
            return _muted("None yet. Tags you add here are labels for fine-tuning.")
        box = QWidget()
        grid = QGridLayout(box)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setColumnStretch(1, 1)
        for row, (tag, yes) in enumerate(sorted(user.items())):
            grid.addWidget(QLabel(tag), row, 0)
            grid.addWidget(_muted("yes" if yes else "rejected"), row, 1)
            remove = QToolButton()
            remove.setText("Remove")
            remove.setObjectName(f"remove:{tag}")
            remove.setAutoRaise(True)
            remove.clicked.connect(
                lambda _c=False, t=tag: self.tag_edit.emit(list(self.track_ids), t, None)
            )
            grid.addWidget(remove, row, 2)
        return box

    def _add_tag_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.tag_input = QLineEdit()
        self.tag_input.setObjectName("addTag")
        self.tag_input.setPlaceholderText("Add a tag…")
        completer = QCompleter(self.known_tags, self.tag_input)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.tag_input.setCompleter(completer)
        add = QPushButton("Add")
        add.clicked.connect(self._add_tag)
        self.tag_input.returnPressed.connect(self._add_tag)
        row.addWidget(self.tag_input, 1)
        row.addWidget(add)
        return row

    def _add_tag(self) -> None:
        tag = self.tag_input.text().strip()
        if tag and self.track_ids:
            self.tag_input.clear()
            self.tag_edit.emit(list(self.track_ids), tag, True)
