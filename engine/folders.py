"""Removing a library folder: its tracks leave the library; files on disk are never touched.

What a desktop music app user expects from "remove folder" (as in iTunes, Rhythmbox, MusicBee):
the folder's tracks disappear from the library, from search, from similar-track results and the
map (their embeddings and index entries go), and from playlists, and the folder is no longer
rescanned at start. Their tags go with them, the user's own included: a label needs a track to
hang on, and adding the folder again starts afresh. Because user tags are the labels fine-tuning
learns from, `plan()` counts what would be lost, so the app can say so before the user confirms.

Playlists: a playlist the user made keeps its other entries (an entry cannot point at a track the
library no longer has). Playlists imported from playlist files inside the folder are deleted with
it: they are that folder's content and come back when it is added again, whereas an emptied copy
would stay empty (rescans re-import only playlist files that changed).

Nested folders: a track that another remembered folder also covers stays (that folder's rescan
would add it straight back); only the removed folder's entry goes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import sqlite_utils

from . import db as dbmod
from .errors import MusicSSLError
from .index import open_index


class FolderNotFound(MusicSSLError, LookupError):
    """The folder is not one of the library's folders."""


@dataclass(frozen=True)
class FolderRemoval:
    """What removing a folder takes out of the library (a plan, or what was done)."""

    folder: str
    tracks: int
    user_tagged: int  # tracks carrying the user's own tags (fine-tuning labels)
    playlist_entries: int  # entries leaving playlists that stay
    playlists: int  # playlists imported from files in the folder, deleted with it

    def summary(self) -> str:
        parts = [f"{self.tracks:,} track{'s' if self.tracks != 1 else ''}"]
        if self.user_tagged:
            parts.append(f"your tags on {self.user_tagged:,} of them")
        if self.playlist_entries:
            parts.append(f"{self.playlist_entries:,} playlist entries")
        if self.playlists:
            parts.append(f"{self.playlists:,} imported playlist(s)")
        return ", ".join(parts)


def _subtree(folder: str) -> tuple[str, str]:
    """[low, high) of every path strictly under `folder`: an index range scan, no LIKE escaping."""
    prefix = folder if folder.endswith(os.sep) else folder + os.sep
    return prefix, prefix[:-1] + chr(ord(os.sep) + 1)


def _under(path: str, folder: str) -> bool:
    low, high = _subtree(folder)
    return low <= path < high


def _resolve(db: sqlite_utils.Database, folder: str | os.PathLike[str]) -> str:
    """The folder as stored: exactly as listed, or the absolute form of what the user typed."""
    stored = [r[0] for r in db.conn.execute("SELECT path FROM library_folders")]
    for candidate in (os.fspath(folder), os.path.abspath(os.path.expanduser(os.fspath(folder)))):
        if candidate in stored:
            return candidate
    raise FolderNotFound(f"{folder} is not a library folder; library folders: {stored or 'none'}")


def _scope(db: sqlite_utils.Database, folder: str) -> tuple[str, list[str]]:
    """A condition on `tracks.path` for the tracks removing `folder` takes out: range scans of
    the path index, so planning stays fast on the GUI thread even for 100,000 tracks."""
    others = [
        r[0] for r in db.conn.execute("SELECT path FROM library_folders WHERE path != ?", [folder])
    ]
    if any(_under(folder, other) for other in others):
        return "0", []  # a remembered parent folder covers every track here
    low, high = _subtree(folder)
    sql, params = "path >= ? AND path < ?", [low, high]
    for other in others:
        if _under(other, folder):  # a remembered folder nested inside keeps its tracks
            sql += " AND NOT (path >= ? AND path < ?)"
            params += list(_subtree(other))
    return sql, params


def _imported_playlists(db: sqlite_utils.Database, folder: str) -> list[int]:
    low, high = _subtree(folder)
    sql = "SELECT id FROM playlists WHERE source_path >= ? AND source_path < ?"
    return [r[0] for r in db.conn.execute(sql, [low, high])]


def plan(db: sqlite_utils.Database, folder: str | os.PathLike[str]) -> FolderRemoval:
    """What `remove` would take out, without changing anything."""
    stored = _resolve(db, folder)
    return _plan(db, stored, _scope(db, stored), _imported_playlists(db, stored))


def _plan(
    db: sqlite_utils.Database, folder: str, scope: tuple[str, list[str]], imported: list[int]
) -> FolderRemoval:
    where, params = scope
    ids = f"SELECT id FROM tracks WHERE {where}"  # noqa: S608 - built from constant parts
    one = lambda sql, args: db.conn.execute(sql, args).fetchone()[0]  # noqa: E731
    # Entries of playlists deleted with the folder are not "left behind" in another playlist.
    skip = f" AND playlist_id NOT IN ({','.join('?' * len(imported))})" if imported else ""
    return FolderRemoval(
        folder,
        tracks=one(f"SELECT count(*) FROM tracks WHERE {where}", params),  # noqa: S608
        user_tagged=one(
            "SELECT count(DISTINCT track_id) FROM tags "  # noqa: S608
            f"WHERE source = 'user' AND track_id IN ({ids})",
            params,
        ),
        playlist_entries=one(
            f"SELECT count(*) FROM playlist_items WHERE track_id IN ({ids}){skip}",  # noqa: S608
            [*params, *imported],
        ),
        playlists=len(imported),
    )


def remove(db: sqlite_utils.Database, folder: str | os.PathLike[str]) -> FolderRemoval:
    """Take the folder and its tracks out of the library (see the module docstring for what
    goes and what stays). Every saved similarity index drops the tracks and is saved again, so
    no index is rebuilt from scratch on the next query."""
    stored = _resolve(db, folder)
    scope = _scope(db, stored)
    imported = _imported_playlists(db, stored)
    result = _plan(db, stored, scope, imported)
    where, params = scope
    ids = [r[0] for r in db.conn.execute(f"SELECT id FROM tracks WHERE {where}", params)]  # noqa: S608
    # Opened before the rows go, so each saved index still matches its embeddings and loads.
    model_ids = [r[0] for r in db.conn.execute("SELECT model_id FROM index_state")]
    indexes = [open_index(db, m) for m in model_ids]
    low, high = _subtree(stored)
    with dbmod.transaction(db) as conn:
        conn.executemany("DELETE FROM playlists WHERE id = ?", [(p,) for p in imported])
        # Tags, embeddings and playlist entries follow by ON DELETE CASCADE.
        conn.executemany("DELETE FROM tracks WHERE id = ?", [(i,) for i in ids])
        conn.execute(
            "DELETE FROM scan_errors WHERE path = ? OR (path >= ? AND path < ?)",
            [stored, low, high],
        )
        conn.execute("DELETE FROM library_folders WHERE path = ?", [stored])
    for index in indexes:
        index.remove(ids)
        index.save(db)
    return result
