"""The library map: every analysed track as a point on the embedding's 2-D PCA plane.

Why drawn with numpy into an image: 100,000 points as QGraphicsItems would be slow to create
and to paint; rasterising them once per resize or colour change costs a few milliseconds and
painting is then one image blit. Click selects the nearest point, double-click plays it, a
drag draws a lasso whose tracks can be saved as a playlist.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPalette,
    QPen,
)
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStackedLayout,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from .. import formatting
from ..models.projection import points_in_polygon

MARGIN = 16  # px around the plot
CLICK_RADIUS = 8  # px: a click this close to a point selects it
MAX_LASSO_VERTICES = 256


def _rgb(color: QColor) -> np.ndarray:
    return np.array([color.red(), color.green(), color.blue()], dtype=np.float32)


class MapCanvas(QWidget):
    point_clicked = Signal(int)  # track id
    point_activated = Signal(int)
    lasso_selected = Signal(list)  # track ids

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setMinimumSize(300, 240)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.ids = np.zeros(0, np.int64)
        self.coords = np.zeros((0, 2), np.float32)
        self.highlight = np.zeros(0, bool)
        self.selected = np.zeros(0, bool)
        self.label_for: Callable[[int], str] | None = None
        self._image: QImage | None = None
        self._lasso: list[QPointF] = []
        self._pressed = False

    def set_points(self, ids: np.ndarray, coords: np.ndarray) -> None:
        self.ids = np.asarray(ids, np.int64)
        self.coords = np.asarray(coords, np.float32)
        self.highlight = np.zeros(len(self.ids), bool)
        self.selected = np.zeros(len(self.ids), bool)
        self._invalidate()

    def set_highlight(self, member_ids: Sequence[int] | None) -> None:
        if member_ids is None:
            self.highlight = np.zeros(len(self.ids), bool)
        else:
            self.highlight = np.isin(self.ids, np.asarray(list(member_ids), np.int64))
        self._invalidate()

    def select_ids(self, ids: Sequence[int]) -> None:
        self.selected = np.isin(self.ids, np.asarray(list(ids), np.int64))
        self.update()

    def selected_ids(self) -> list[int]:
        return [int(i) for i in self.ids[self.selected]]

    # -- geometry --------------------------------------------------------------------------------
    def screen_points(self) -> np.ndarray:
        """Point positions in widget pixels (float)."""
        w = max(1, self.width() - 2 * MARGIN)
        h = max(1, self.height() - 2 * MARGIN)
        side = min(w, h)
        ox = MARGIN + (w - side) / 2
        oy = MARGIN + (h - side) / 2
        pts = np.empty_like(self.coords, dtype=np.float64)
        pts[:, 0] = ox + self.coords[:, 0] * side
        pts[:, 1] = oy + (1.0 - self.coords[:, 1]) * side
        return pts

    def nearest(self, pos: QPointF, radius: float = CLICK_RADIUS) -> int | None:
        if not len(self.ids):
            return None
        pts = self.screen_points()
        d2 = (pts[:, 0] - pos.x()) ** 2 + (pts[:, 1] - pos.y()) ** 2
        i = int(d2.argmin())
        return i if d2[i] <= radius * radius else None

    def lasso(self, polygon: Sequence[tuple[float, float]]) -> list[int]:
        """Select the points inside a polygon given in widget pixels; returns their ids."""
        poly = np.asarray(polygon, np.float64)
        if len(poly) > MAX_LASSO_VERTICES:
            poly = poly[np.linspace(0, len(poly) - 1, MAX_LASSO_VERTICES).astype(int)]
        self.selected = points_in_polygon(self.screen_points(), poly)
        self.update()
        ids = self.selected_ids()
        self.lasso_selected.emit(ids)
        return ids

    # -- painting ----------------------------------------------------------------------------------
    def _invalidate(self) -> None:
        self._image = None
        self.update()

    def resizeEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt API
        self._image = None
        super().resizeEvent(event)

    def changeEvent(self, event) -> None:  # noqa: N802, ANN001 - light/dark switch repaints
        self._image = None
        super().changeEvent(event)

    def _render(self) -> QImage:
        ratio = self.devicePixelRatioF()
        w, h = max(1, int(self.width() * ratio)), max(1, int(self.height() * ratio))
        palette = self.palette()
        bg = _rgb(palette.color(QPalette.ColorRole.Base))
        fg = _rgb(palette.color(QPalette.ColorRole.Text))
        hl = _rgb(palette.color(QPalette.ColorRole.Highlight))
        img = np.empty((h, w, 4), np.uint8)
        img[..., :3] = bg.astype(np.uint8)
        img[..., 3] = 255
        if len(self.ids):
            pts = np.round(self.screen_points() * ratio).astype(np.int64)
            # Big dots for a small library, small ones where 100,000 would merge into a blot.
            n = len(self.ids)
            base = 7 if n < 500 else 5 if n < 5000 else 3 if n < 50000 else 2
            size = max(2, int(round(base * ratio)))

            def dots(mask: np.ndarray, color: np.ndarray) -> None:
                xs, ys = pts[mask, 0], pts[mask, 1]
                for dx in range(size):
                    for dy in range(size):
                        x = np.clip(xs + dx - size // 2, 0, w - 1)
                        y = np.clip(ys + dy - size // 2, 0, h - 1)
                        img[y, x, :3] = color.astype(np.uint8)

            plain = bg * 0.35 + fg * 0.65
            dots(~self.highlight, plain)
            dots(self.highlight, hl)
        frame = (bg * 0.8 + fg * 0.2).astype(np.uint8)
        img[[0, -1], :, :3] = frame
        img[:, [0, -1], :3] = frame
        image = QImage(img.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
        image.setDevicePixelRatio(ratio)
        return image

    def paintEvent(self, _event: QPaintEvent) -> None:  # noqa: N802
        if self._image is None:
            self._image = self._render()
        painter = QPainter(self)
        painter.drawImage(0, 0, self._image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        if self.selected.any():
            pen = QPen(palette.color(QPalette.ColorRole.Highlight), 2.0)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            for x, y in self.screen_points()[self.selected][:5000]:
                painter.drawEllipse(QPointF(x, y), 6.5, 6.5)
        if self._lasso:
            pen = QPen(palette.color(QPalette.ColorRole.Text), 1, Qt.PenStyle.DashLine)
            painter.setPen(pen)
            path = QPainterPath(self._lasso[0])
            for p in self._lasso[1:]:
                path.lineTo(p)
            painter.drawPath(path)
        painter.end()

    # -- mouse -----------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            self._pressed = True
            self._lasso = [event.position()]

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._pressed:
            self._lasso.append(event.position())
            self.update()
            return
        i = self.nearest(event.position(), radius=6)
        if i is not None and self.label_for is not None:
            QToolTip.showText(
                event.globalPosition().toPoint(), self.label_for(int(self.ids[i])), self
            )
        else:
            QToolTip.hideText()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if not self._pressed:
            return
        self._pressed = False
        path, self._lasso = self._lasso, []
        moved = max((abs(p.x() - path[0].x()) + abs(p.y() - path[0].y()) for p in path), default=0)
        if len(path) >= 3 and moved > 6:
            self.lasso([(p.x(), p.y()) for p in path])
            return
        i = self.nearest(event.position())
        self.selected = np.zeros(len(self.ids), bool)
        if i is not None:
            self.selected[i] = True
            self.point_clicked.emit(int(self.ids[i]))
        self.update()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        i = self.nearest(event.position())
        if i is not None:
            self.point_activated.emit(int(self.ids[i]))


class MapView(QWidget):
    reload_requested = Signal()
    tag_requested = Signal(object)  # tag name or None
    selection_changed = Signal(list)
    play_requested = Signal(int)
    save_requested = Signal(list, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.colour = QComboBox()
        self.colour.setMinimumWidth(140)
        self.colour.addItem("No colouring", None)
        self.colour.currentIndexChanged.connect(
            lambda _i: self.tag_requested.emit(self.colour.currentData())
        )
        self.info = QLabel()
        self.play_button = QPushButton("Play")
        self.play_button.clicked.connect(self._play)
        self.save_button = QPushButton("Save as playlist…")
        self.save_button.setToolTip("Save the selected points as a playlist")
        self.save_button.clicked.connect(self._save)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.reload_requested)
        top = QHBoxLayout()
        top.addWidget(QLabel("Colour by tag"))
        top.addWidget(self.colour)
        top.addStretch(1)
        top.addWidget(self.refresh_button)
        top.addWidget(self.play_button)
        top.addWidget(self.save_button)
        hint = QLabel("Click a point to select it, double-click to play, drag to draw a lasso.")
        hint.setEnabled(False)
        hint.setWordWrap(True)
        self.info.setWordWrap(True)
        self.canvas = MapCanvas()
        self.canvas.point_clicked.connect(lambda i: self._selected([i]))
        self.canvas.lasso_selected.connect(self._selected)
        self.canvas.point_activated.connect(self.play_requested)
        self.message = QLabel()
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.stack = QStackedLayout()
        self.stack.addWidget(self.canvas)
        self.stack.addWidget(self.message)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.info)
        layout.addWidget(hint)
        layout.addLayout(self.stack, 1)
        self.loaded = False
        self._update_buttons()

    def set_tags(self, tags: Sequence[str]) -> None:
        current = self.colour.currentData()
        self.colour.blockSignals(True)
        self.colour.clear()
        self.colour.addItem("No colouring", None)
        for tag in tags:
            self.colour.addItem(tag, tag)
        index = self.colour.findData(current)
        self.colour.setCurrentIndex(max(0, index))
        self.colour.blockSignals(False)

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.stack.setCurrentWidget(self.message)

    def show_points(self, ids: np.ndarray, coords: np.ndarray) -> None:
        self.loaded = True
        self.canvas.set_points(ids, coords)
        if len(ids) == 0:
            self.show_message("The map appears once some tracks are analysed.")
        else:
            self.stack.setCurrentWidget(self.canvas)
            self.info.setText(f"{formatting.plural(len(ids), 'analysed track')}, 2-D PCA")
        self._update_buttons()
        if self.colour.currentData() is not None:
            self.tag_requested.emit(self.colour.currentData())

    def show_tag(self, tag: str | None, member_ids: Sequence[int] | None) -> None:
        self.canvas.set_highlight(member_ids)
        if tag:
            n = int(self.canvas.highlight.sum())
            self.info.setText(
                f"{formatting.plural(len(self.canvas.ids), 'analysed track')}; "
                f"{n:,} tagged “{tag}” in the highlight colour"
            )

    def _selected(self, ids: list[int]) -> None:
        self._update_buttons()
        self.selection_changed.emit(ids)

    def _update_buttons(self) -> None:
        has = bool(self.canvas.selected.any())
        self.play_button.setEnabled(has)
        self.save_button.setEnabled(has)

    def _play(self) -> None:
        ids = self.canvas.selected_ids()
        if ids:
            self.play_requested.emit(ids[0])

    def _save(self) -> None:
        ids = self.canvas.selected_ids()
        if ids:
            self.save_requested.emit(ids, "Map selection")
