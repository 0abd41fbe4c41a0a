"""Drag-and-drop payloads inside the app: track ids (table → playlist) and playlist positions.

Why our own MIME types: dropping on a playlist must add library tracks by id, and reordering
inside a playlist must move positions, not add copies; file URLs are kept alongside so tracks
can also be dropped onto other applications.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from PySide6.QtCore import QMimeData, QUrl

TRACK_IDS = "application/x-musicssl-track-ids"
PLAYLIST_POSITIONS = "application/x-musicssl-playlist-positions"


def track_mime(track_ids: Sequence[int], paths: Iterable[str] = ()) -> QMimeData:
    mime = QMimeData()
    mime.setData(TRACK_IDS, json.dumps([int(t) for t in track_ids]).encode())
    urls = [QUrl.fromLocalFile(p) for p in paths if p]
    if urls:
        mime.setUrls(urls)
    return mime


def track_ids(mime: QMimeData) -> list[int]:
    if not mime.hasFormat(TRACK_IDS):
        return []
    try:
        return [int(t) for t in json.loads(bytes(mime.data(TRACK_IDS).data()).decode())]
    except (ValueError, TypeError):
        return []


def positions_mime(playlist_id: int, positions: Sequence[int], ids: Sequence[int]) -> QMimeData:
    mime = track_mime(ids)
    payload = {"playlist": int(playlist_id), "positions": [int(p) for p in positions]}
    mime.setData(PLAYLIST_POSITIONS, json.dumps(payload).encode())
    return mime


def positions(mime: QMimeData) -> tuple[int, list[int]] | None:
    if not mime.hasFormat(PLAYLIST_POSITIONS):
        return None
    try:
        data = json.loads(bytes(mime.data(PLAYLIST_POSITIONS).data()).decode())
        return int(data["playlist"]), [int(p) for p in data["positions"]]
    except (ValueError, TypeError, KeyError):
        return None


def local_paths(mime: QMimeData) -> list[str]:
    """Local files/folders from a drop from the file manager (other URLs are ignored)."""
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile()]
