"""The sidebar: Library (all tracks, map, duplicates), Playlists, Tags & genres, Missing & errors.

Why a tree of fixed sections: it is the navigation people know from music players; each item
carries a (kind, value) key so the window can switch pages without knowing about tree items.
Tracks dragged from any table can be dropped on a playlist here (or on "Playlists" to make a
new one).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent, QFont, QIcon
from PySide6.QtWidgets import QAbstractItemView, QMenu, QStyle, QTreeWidget, QTreeWidgetItem

from .. import formatting, icons, mime

KEY = Qt.ItemDataRole.UserRole
Key = tuple[str, Any]
TAGS_SHOWN = 300  # the sidebar lists the most used tags; the filter box finds any tag


class Sidebar(QTreeWidget):
    navigate = Signal(str, object)  # kind, value
    tracks_dropped = Signal(object, list)  # playlist id (None: a new playlist), track ids
    new_playlist = Signal()
    import_playlist = Signal()
    rename_playlist = Signal(int)
    delete_playlist = Signal(int)
    export_playlist = Signal(int)

    def __init__(self, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.setHeaderHidden(True)
        self.setRootIsDecorated(False)
        self.setIndentation(12)
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.setMinimumWidth(170)
        self._tag_icon = icons.named("tag", QStyle.StandardPixmap.SP_FileLinkIcon)
        self._playlist_icon = icons.named("playlist", QStyle.StandardPixmap.SP_FileIcon)
        self.library = self._section("Library", ("section", "library"))
        self.all_tracks = self._item(
            self.library, "All tracks", ("library", None), QStyle.StandardPixmap.SP_DirHomeIcon
        )
        self.map_item = self._item(
            self.library,
            "Library map",
            ("map", None),
            QStyle.StandardPixmap.SP_FileDialogContentsView,
        )
        self.duplicates_item = self._item(
            self.library,
            "Duplicates",
            ("duplicates", None),
            QStyle.StandardPixmap.SP_FileDialogDetailedView,
        )
        self.playlists = self._section("Playlists", ("section", "playlists"))
        self.tags = self._section("Tags & genres", ("section", "tags"))
        self.problems = self._section("Problems", ("section", "problems"))
        self.errors_item = self._item(
            self.problems,
            "Missing & errors",
            ("errors", None),
            QStyle.StandardPixmap.SP_MessageBoxWarning,
        )
        self.expandAll()
        self.currentItemChanged.connect(self._on_current)
        self.setCurrentItem(self.all_tracks)

    # -- building ------------------------------------------------------------------------------
    def _section(self, title: str, key: Key) -> QTreeWidgetItem:
        item = QTreeWidgetItem(self, [title])
        font = QFont(item.font(0))
        font.setBold(True)
        item.setFont(0, font)
        item.setData(0, KEY, key)
        item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsDropEnabled)
        return item

    def _item(self, parent: QTreeWidgetItem, text: str, key: Key, icon=None) -> QTreeWidgetItem:  # noqa: ANN001
        item = QTreeWidgetItem(parent, [text])
        item.setData(0, KEY, key)
        if isinstance(icon, QIcon):
            item.setIcon(0, icon)
        elif icon is not None:
            item.setIcon(0, icons.standard(icon))
        return item

    def key_of(self, item: QTreeWidgetItem | None) -> Key | None:
        return None if item is None else item.data(0, KEY)

    def current_key(self) -> Key | None:
        return self.key_of(self.currentItem())

    def find(self, kind: str, value: Any = None) -> QTreeWidgetItem | None:
        for top in range(self.topLevelItemCount()):
            section = self.topLevelItem(top)
            for i in range(section.childCount()):
                child = section.child(i)
                if child.data(0, KEY) == (kind, value):
                    return child
        return None

    def select(self, kind: str, value: Any = None) -> None:
        item = self.find(kind, value)
        if item is not None:
            self.setCurrentItem(item)

    # -- refresh -------------------------------------------------------------------------------
    def set_counts(self, status: dict[str, Any]) -> None:
        self.all_tracks.setText(0, f"All tracks ({status.get('tracks', 0):,})")
        problems = status.get("errors", 0) + status.get("missing", 0) + status.get("scan_errors", 0)
        self.errors_item.setText(
            0, f"Missing & errors ({problems:,})" if problems else "Missing & errors"
        )

    def set_playlists(self, playlists: list[dict[str, Any]]) -> None:
        current = self.current_key()
        self.blockSignals(True)
        self.playlists.takeChildren()
        for pl in playlists:
            item = self._item(
                self.playlists,
                f"{pl['name']} ({pl['count']})",
                ("playlist", pl["id"]),
                self._playlist_icon,
            )
            item.setToolTip(
                0,
                f"{pl['name']}: {formatting.plural(pl['count'], 'track')}, "
                f"{formatting.duration(pl['duration'])}",
            )
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsDropEnabled)
        if not playlists:
            hint = QTreeWidgetItem(self.playlists, ["Drop tracks here"])
            hint.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsDropEnabled)
            hint.setData(0, KEY, ("section", "playlists"))
            hint.setForeground(0, self.palette().placeholderText())
        self._restore(current)
        self.blockSignals(False)

    def set_tags(self, tag_counts: list[dict[str, Any]]) -> None:
        current = self.current_key()
        self.blockSignals(True)
        self.tags.takeChildren()
        for row in tag_counts[:TAGS_SHOWN]:
            self._item(
                self.tags, f"{row['tag']} ({row['tracks']})", ("tag", row["tag"]), self._tag_icon
            )
        self._restore(current)
        self.blockSignals(False)

    def _restore(self, key: Key | None) -> None:
        if key is None:
            return
        item = self.find(*key)
        if item is not None:
            self.setCurrentItem(item)
        elif key[0] in ("playlist", "tag"):
            self.setCurrentItem(self.all_tracks)
            self.blockSignals(False)
            self.navigate.emit("library", None)

    def _on_current(self, item: QTreeWidgetItem | None, _previous) -> None:  # noqa: ANN001
        key = self.key_of(item)
        if key is not None and key[0] != "section":
            self.navigate.emit(key[0], key[1])

    # -- drops of tracks -----------------------------------------------------------------------
    def _drop_target(self, pos: QPoint) -> Key | None:
        key = self.key_of(self.itemAt(pos))
        if key is None:
            return None
        if key[0] == "playlist" or key == ("section", "playlists"):
            return key
        return None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if event.mimeData().hasFormat(mime.TRACK_IDS):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802
        if event.mimeData().hasFormat(mime.TRACK_IDS) and self._drop_target(
            event.position().toPoint()
        ):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        key = self._drop_target(event.position().toPoint())
        ids = mime.track_ids(event.mimeData())
        if key is None or not ids:
            event.ignore()
            return
        event.setDropAction(Qt.DropAction.CopyAction)
        event.accept()
        target = key[1] if key[0] == "playlist" else None
        # After the drop has finished: handling it rebuilds the items under the cursor.
        QTimer.singleShot(0, lambda: self.tracks_dropped.emit(target, ids))

    # -- context menu --------------------------------------------------------------------------
    def build_menu(self, key: Key | None) -> QMenu:
        """The context menu for an item key (built separately so keyboard and tests reach it)."""
        menu = QMenu(self)
        if key is not None and key[0] == "playlist":
            pid = key[1]
            menu.addAction("Rename…", lambda: self.rename_playlist.emit(pid))
            menu.addAction("Export…", lambda: self.export_playlist.emit(pid))
            menu.addSeparator()
            menu.addAction("Delete", lambda: self.delete_playlist.emit(pid))
            menu.addSeparator()
        if key is not None and (key[0] == "playlist" or key == ("section", "playlists")):
            menu.addAction("New playlist…", self.new_playlist.emit)
            menu.addAction("Import playlist…", self.import_playlist.emit)
        return menu

    def _menu(self, pos: QPoint) -> None:
        menu = self.build_menu(self.key_of(self.itemAt(pos)))
        if not menu.isEmpty():
            menu.exec(self.viewport().mapToGlobal(pos))
        menu.deleteLater()
