"""Icons: the app's own SVGs from `musicssl.resources/icons`, else the style's standard ones.

Why standard icons first: they follow the platform theme (light/dark) for free.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QStyle


def _resource(name: str) -> str | None:
    try:
        path = resources.files("musicssl.resources") / "icons" / name
    except ModuleNotFoundError:
        return None
    return str(path) if path.is_file() else None


@cache
def app_icon() -> QIcon:
    path = _resource("musicssl.svg")
    return QIcon(path) if path else standard(QStyle.StandardPixmap.SP_MediaVolume)


def named(name: str, fallback: QStyle.StandardPixmap) -> QIcon:
    """A themed icon by freedesktop name, else our SVG of that name, else the style's."""
    icon = QIcon.fromTheme(name)
    if not icon.isNull():
        return icon
    path = _resource(f"{name}.svg")
    return QIcon(path) if path else standard(fallback)


def standard(pixmap: QStyle.StandardPixmap) -> QIcon:
    return QApplication.style().standardIcon(pixmap)
