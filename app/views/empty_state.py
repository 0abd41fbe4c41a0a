"""The first-run page: an empty library invites the user to drop their music folder."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from .. import icons


class EmptyState(QWidget):
    choose_folder = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("emptyState")
        icon = QLabel()
        icon.setPixmap(icons.app_icon().pixmap(96, 96))
        icon.setAlignment(Qt.AlignmentFlag.AlignCenter)
        title = QLabel("Drop your music folder here")
        font = QFont(title.font())
        font.setPointSizeF(font.pointSizeF() * 1.8)
        font.setBold(True)
        title.setFont(font)
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        # Explicit line breaks, no word wrap: a wrapped label inside a centred layout is
        # given the height of one line and gets clipped.
        self.text = QLabel(
            "MusicSSL reads your files where they are, listens to each track once\n"
            "in the background, then finds similar music, duplicates and tags.\n"
            "Nothing is moved or changed on disk."
        )
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._invitation = self.text.text()
        button = QPushButton("Choose music folder…")
        button.setDefault(True)
        button.clicked.connect(self.choose_folder)
        layout = QVBoxLayout(self)
        layout.addStretch(2)
        layout.addWidget(icon)
        layout.addSpacing(12)
        layout.addWidget(title)
        layout.addWidget(self.text, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addSpacing(12)
        layout.addWidget(button, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(3)

    def set_busy(self, busy: bool) -> None:
        """While the first scan runs, say so instead of inviting a drop again."""
        self.text.setText(
            "Reading your music… tracks appear here as they are found."
            if busy
            else self._invitation
        )
