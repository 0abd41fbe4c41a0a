"""The preview strip under the table: play/pause, a seek slider, time, what is playing.

When preview cannot work (no PortAudio, no output device) the controls are disabled and the
reason is shown in the strip itself, so the user knows it is not a bug in their files.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QStyle, QToolButton, QWidget

from .. import formatting, icons
from ..player import Player

SLIDER_STEPS = 1000


class PlayerBar(QWidget):
    def __init__(self, player: Player, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.player = player
        self.play_button = QToolButton()
        self.play_button.setIcon(icons.standard(QStyle.StandardPixmap.SP_MediaPlay))
        self.play_button.setToolTip("Play / pause (Space)")
        self.play_button.setAutoRaise(True)
        self.play_button.clicked.connect(self.player.toggle)
        self.stop_button = QToolButton()
        self.stop_button.setIcon(icons.standard(QStyle.StandardPixmap.SP_MediaStop))
        self.stop_button.setToolTip("Stop")
        self.stop_button.setAutoRaise(True)
        self.stop_button.clicked.connect(self.player.stop)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setToolTip("Seek")
        self.slider.sliderReleased.connect(self._seek)
        self.time = QLabel("0:00 / 0:00")
        self.title = QLabel("Nothing playing")
        self.title.setMinimumWidth(160)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setObjectName("previewMessage")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        layout.addWidget(self.play_button)
        layout.addWidget(self.stop_button)
        layout.addWidget(self.title, 1)
        layout.addWidget(self.slider, 2)
        layout.addWidget(self.time)
        layout.addWidget(self.message, 3)
        player.state_changed.connect(self._on_state)
        player.position_changed.connect(self._on_position)
        player.track_changed.connect(self._on_track)
        player.error.connect(self._on_error)
        self._apply_availability()

    def _apply_availability(self) -> None:
        ok = self.player.available
        for w in (self.play_button, self.stop_button, self.slider):
            w.setEnabled(ok)
        self.message.setVisible(not ok)
        self.slider.setVisible(ok)
        self.time.setVisible(ok)
        self.title.setVisible(ok)
        if not ok:
            self.message.setText(self.player.unavailable_reason)

    def _on_state(self, state: str) -> None:
        pixmap = QStyle.StandardPixmap
        icon = pixmap.SP_MediaPause if state == "playing" else pixmap.SP_MediaPlay
        self.play_button.setIcon(icons.standard(icon))

    def _on_position(self, seconds: float, total: float) -> None:
        if not self.slider.isSliderDown() and total > 0:
            self.slider.setValue(int(SLIDER_STEPS * min(1.0, seconds / total)))
        self.time.setText(f"{formatting.duration(seconds)} / {formatting.duration(total)}")

    def _on_track(self, track) -> None:  # noqa: ANN001 - dict or None
        self.title.setText(formatting.track_label(track) if track else "Nothing playing")
        self.title.setToolTip(track.get("path", "") if track else "")

    def _on_error(self, message: str) -> None:
        self.title.setText(message)

    def _seek(self) -> None:
        if self.player.duration > 0:
            self.player.seek(self.player.duration * self.slider.value() / SLIDER_STEPS)
