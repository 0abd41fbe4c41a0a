"""Render the app's SVG icon to the PNG a Linux .desktop entry points at.

Why at build time: the SVG in resources/icons is the one source of the icon, and menus and
docks want a raster image (hicolor 256x256); Qt's own SVG renderer keeps the two identical.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

SVG = Path(__file__).resolve().parents[1] / "resources" / "icons" / "musicssl.svg"
SIZE = 256


def render(svg: Path, png: Path, size: int = SIZE) -> None:
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    renderer.render(painter)
    painter.end()
    if not image.save(str(png), "PNG"):
        raise SystemExit(f"cannot write {png}")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        raise SystemExit("usage: render_icon.py OUTPUT.png")
    _app = QGuiApplication(argv[:1])  # QPainter needs a GUI application (QT_QPA_PLATFORM=offscreen)
    render(SVG, Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
