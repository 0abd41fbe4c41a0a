"""Playlist commands the window offers (create, add, rename, delete, export, import).

Why separate from the window: these are the only places the app edits playlists, each a
short facade call plus the question asked first; keeping them together keeps `window.py`
about layout and navigation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from musicssl.engine import playlists
from musicssl.engine.playlist_formats import PlaylistFormatError

from .jobs import ImportPlaylistJob

if TYPE_CHECKING:
    from .window import MainWindow

EXPORT_FILTERS = {
    "M3U8 playlist (*.m3u8)": "m3u8",
    "XSPF playlist (*.xspf)": "xspf",
    "PLS playlist (*.pls)": "pls",
}
IMPORT_FILTER = "Playlists (*.m3u *.m3u8 *.pls *.xspf);;All files (*)"


def _safe_file_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in " -_.()" else "_" for c in name).strip()
    return cleaned or "playlist"


class PlaylistActions:
    def __init__(self, window: MainWindow) -> None:
        self.w = window

    @property
    def lib(self):  # noqa: ANN201 - the window's Library
        return self.w.lib

    def _name(self, pid: int) -> str:
        for pl in self.lib.playlists():
            if pl["id"] == pid:
                return pl["name"]
        raise playlists.PlaylistNotFound(pid)

    def new(self, track_ids: Sequence[int] = (), name: str | None = None) -> int | None:
        """Ask for a name (unless given) and create the playlist with these tracks."""
        if name is None:
            name = self.w.dialogs.ask_text(self.w, "New playlist", "Name:", "New playlist")
        if not name:
            return None
        pid = self.lib.create_playlist(name, list(track_ids))
        self.w.refresh_playlists()
        self.w.sidebar.select("playlist", pid)
        self.w.statusBar().showMessage(f"Created playlist “{name}”", 5000)
        return pid

    def add(self, pid: int | None, track_ids: Sequence[int]) -> None:
        if not track_ids:
            return
        if pid is None:
            self.new(track_ids)
            return
        self.lib.add_to_playlist(pid, list(track_ids))
        self.w.refresh_playlists()
        if self.w.playlist_model.playlist_id == pid:
            self.w.playlist_model.reload()
        n = len(track_ids)
        self.w.statusBar().showMessage(
            f"Added {n} track{'s' if n != 1 else ''} to “{self._name(pid)}”", 5000
        )

    def rename(self, pid: int) -> None:
        old = self._name(pid)
        name = self.w.dialogs.ask_text(self.w, "Rename playlist", "Name:", old)
        if name and name != old:
            playlists.rename(self.lib.db, pid, name)
            self.w.refresh_playlists()
            if self.w.playlist_model.playlist_id == pid:
                self.w.playlist_view.heading.setText(name)

    def delete(self, pid: int) -> None:
        name = self._name(pid)
        question = f"Delete the playlist “{name}”? The tracks stay in your library."
        if not self.w.dialogs.confirm(self.w, "Delete playlist", question):
            return
        playlists.delete(self.lib.db, pid)
        if self.w.playlist_model.playlist_id == pid:
            self.w.playlist_model.set_playlist(None)
            self.w.sidebar.select("library")
        self.w.refresh_playlists()

    def export(self, pid: int) -> Path | None:
        name = self._name(pid)
        start = os.path.join(os.path.expanduser("~"), _safe_file_name(name) + ".m3u8")
        path, chosen = self.w.dialogs.save_file(
            self.w, "Export playlist", start, ";;".join(EXPORT_FILTERS)
        )
        if not path:
            return None
        fmt = EXPORT_FILTERS.get(chosen)
        ext = os.path.splitext(path)[1].lower().lstrip(".")
        if ext in ("m3u8", "m3u", "xspf", "pls"):
            fmt = ext  # the typed extension wins over the filter
        elif fmt:
            path += "." + fmt
        try:
            written = self.lib.export_playlist(pid, path, fmt)
        except (OSError, ValueError, PlaylistFormatError) as exc:
            self.w.dialogs.error(self.w, "Export failed", f"Could not write {path}:\n{exc}")
            return None
        self.w.statusBar().showMessage(f"Exported “{name}” to {written}", 8000)
        return written

    def import_file(self, path: str | None = None) -> None:
        if path is None:
            path = self.w.dialogs.open_file(self.w, "Import playlist", IMPORT_FILTER)
        if path:
            self.w.jobs.submit(ImportPlaylistJob(path))
            self.w.queue_analysis()
