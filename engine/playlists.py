"""Playlists in the library DB: ordered track lists, edited here, imported from / exported to files.

Positions are 0..n-1 as seen by callers. The stored `position` column normally matches, but a
track deleted from the library takes its playlist rows with it (ON DELETE CASCADE), leaving gaps;
so every function here works on the *order* of the stored positions, and every edit writes the
playlist back contiguous. Renumbering goes through negative positions inside the transaction so
PRIMARY KEY(playlist_id, position) never sees two rows on one position.

Every mutating function runs in one transaction (`db.transaction`) and bumps `updated_at`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils
from musicssl.engine import playlist_formats
from musicssl.engine.db import now, transaction

from .errors import MusicSSLError

__all__ = [
    "ImportResult",
    "PlaylistNotFound",
    "add_tracks",
    "create",
    "delete",
    "export",
    "import_file",
    "items",
    "list_playlists",
    "move",
    "remove_positions",
    "rename",
]

_CHUNK = 500  # ids per IN (...) query, well under SQLite's bound-parameter limit


class PlaylistNotFound(MusicSSLError, KeyError):
    """No playlist with this id."""

    def __init__(self, playlist_id: int) -> None:
        super().__init__(playlist_id)
        self.playlist_id = playlist_id

    def __str__(self) -> str:
        return f"no playlist with id {self.playlist_id}"


@dataclass
class ImportResult:
    """What `import_file` did; `missing`: entry paths not in the library (each once, in order)."""

    playlist_id: int
    matched: int = 0
    missing: list[str] = field(default_factory=list)
    skipped_urls: int = 0
    unchanged: bool = False  # only_if_changed=True and the file had not changed: nothing was read
    # path -> reason: entries not trusted enough to scan in (see playlist_trust); not in `missing`
    flagged: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _require(conn: sqlite3.Connection, playlist_id: int) -> None:
    if conn.execute("SELECT 1 FROM playlists WHERE id = ?", (playlist_id,)).fetchone() is None:
        raise PlaylistNotFound(playlist_id)


def _touch(conn: sqlite3.Connection, playlist_id: int) -> None:
    conn.execute("UPDATE playlists SET updated_at = ? WHERE id = ?", (now(), playlist_id))


def _stored_positions(conn: sqlite3.Connection, playlist_id: int) -> list[int]:
    rows = conn.execute(
        "SELECT position FROM playlist_items WHERE playlist_id = ? ORDER BY position",
        (playlist_id,),
    )
    return [row[0] for row in rows]


def _relayout(conn: sqlite3.Connection, playlist_id: int, moves: Iterable[tuple[int, int]]) -> None:
    """Apply (stored position -> new position) moves without a transient PRIMARY KEY clash.

    Rows not named keep their position; the caller guarantees the new positions of the moved rows
    are distinct and not held by a row that stays. Moved rows first park on -(new + 1), unique
    and below every real position, then flip to `new`.
    """
    changes = [(-(new + 1), playlist_id, old) for old, new in moves if old != new]
    if not changes:
        return
    conn.executemany(
        "UPDATE playlist_items SET position = ? WHERE playlist_id = ? AND position = ?", changes
    )
    conn.execute(
        "UPDATE playlist_items SET position = -position - 1 WHERE playlist_id = ? AND position < 0",
        (playlist_id,),
    )


def _check_positions(positions: Iterable[int], count: int) -> list[int]:
    """Sorted distinct positions, each in 0..count-1 (IndexError otherwise)."""
    chosen = sorted({int(p) for p in positions})
    bad = [p for p in chosen if not 0 <= p < count]
    if bad:
        raise IndexError(f"positions {bad} out of range for a playlist of {count} items")
    return chosen


def _clean_name(name: str) -> str:
    cleaned = str(name).strip()
    if not cleaned:
        raise ValueError("a playlist name cannot be empty")
    return cleaned


def _rows(cursor: sqlite3.Cursor) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def _track_ids_by_path(conn: sqlite3.Connection, paths: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    unique = list(dict.fromkeys(paths))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(f"SELECT id, path FROM tracks WHERE path IN ({marks})", chunk)  # noqa: S608
        found.update((path, track_id) for track_id, path in rows)
    return found


def _missing_track_ids(conn: sqlite3.Connection, track_ids: Sequence[int]) -> list[int]:
    wanted = list(dict.fromkeys(track_ids))
    present: set[int] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(f"SELECT id FROM tracks WHERE id IN ({marks})", chunk)  # noqa: S608
        present.update(row[0] for row in rows)
    return [t for t in wanted if t not in present]


def _replace_items(conn: sqlite3.Connection, playlist_id: int, track_ids: Sequence[int]) -> None:
    conn.execute("DELETE FROM playlist_items WHERE playlist_id = ?", (playlist_id,))
    conn.executemany(
        "INSERT INTO playlist_items (playlist_id, position, track_id) VALUES (?, ?, ?)",
        [(playlist_id, pos, track_id) for pos, track_id in enumerate(track_ids)],
    )


# --------------------------------------------------------------------------------------------
# CRUD
# --------------------------------------------------------------------------------------------


def create(db: sqlite_utils.Database, name: str) -> int:
    """A new empty playlist; returns its id. Names need not be unique."""
    name = _clean_name(name)
    stamp = now()
    with transaction(db) as conn:
        cursor = conn.execute(
            "INSERT INTO playlists (name, created_at, updated_at) VALUES (?, ?, ?)",
            (name, stamp, stamp),
        )
        return int(cursor.lastrowid)


def rename(db: sqlite_utils.Database, playlist_id: int, name: str) -> None:
    name = _clean_name(name)
    with transaction(db) as conn:
        cursor = conn.execute(
            "UPDATE playlists SET name = ?, updated_at = ? WHERE id = ?", (name, now(), playlist_id)
        )
        if cursor.rowcount == 0:
            raise PlaylistNotFound(playlist_id)


def delete(db: sqlite_utils.Database, playlist_id: int) -> None:
    """Delete the playlist and its items (the tracks stay in the library)."""
    with transaction(db) as conn:
        if conn.execute("DELETE FROM playlists WHERE id = ?", (playlist_id,)).rowcount == 0:
            raise PlaylistNotFound(playlist_id)


def list_playlists(db: sqlite_utils.Database) -> list[dict]:
    """All playlists by name: id, name, count, duration (seconds, unknown ones counted as 0),
    source_path (the file it was imported from, or None), created_at, updated_at."""
    cursor = db.execute(
        """
        SELECT p.id, p.name, COUNT(i.track_id) AS count,
               COALESCE(SUM(t.duration), 0.0) AS duration,
               p.source_path, p.created_at, p.updated_at
        FROM playlists p
        LEFT JOIN playlist_items i ON i.playlist_id = p.id
        LEFT JOIN tracks t ON t.id = i.track_id
        GROUP BY p.id
        ORDER BY p.name COLLATE NOCASE, p.id
        """
    )
    return _rows(cursor)


def items(db: sqlite_utils.Database, playlist_id: int) -> list[dict]:
    """The playlist in order: position (0..n-1), track_id, path, title, artist, album, duration."""
    _require(db.conn, playlist_id)
    cursor = db.execute(
        """
        SELECT i.position, i.track_id, t.path, t.title, t.artist, t.album, t.duration
        FROM playlist_items i JOIN tracks t ON t.id = i.track_id
        WHERE i.playlist_id = ?
        ORDER BY i.position
        """,
        (playlist_id,),
    )
    rows = _rows(cursor)
    for index, row in enumerate(rows):
        row["position"] = index  # hides gaps left by tracks deleted from the library
    return rows


# --------------------------------------------------------------------------------------------
# Editing
# --------------------------------------------------------------------------------------------


def add_tracks(
    db: sqlite_utils.Database,
    playlist_id: int,
    track_ids: Iterable[int],
    position: int | None = None,
) -> list[int]:
    """Insert tracks (duplicates allowed) before `position`, or append when it is None.

    A position past the end appends; a negative one, or an id not in `tracks`, is a ValueError
    and nothing is added. Returns the positions the new items landed on.
    """
    ids = [int(t) for t in track_ids]
    if position is not None and position < 0:
        raise ValueError(f"position must be >= 0, not {position}")
    with transaction(db) as conn:
        _require(conn, playlist_id)
        unknown = _missing_track_ids(conn, ids)
        if unknown:
            more = " ..." if len(unknown) > 20 else ""
            raise ValueError(f"no tracks in the library with ids {unknown[:20]}{more}")
        stored = _stored_positions(conn, playlist_id)
        at = len(stored) if position is None else min(position, len(stored))
        shift = len(ids)
        _relayout(
            conn,
            playlist_id,
            [(old, i + shift if i >= at else i) for i, old in enumerate(stored)],
        )
        conn.executemany(
            "INSERT INTO playlist_items (playlist_id, position, track_id) VALUES (?, ?, ?)",
            [(playlist_id, at + k, track_id) for k, track_id in enumerate(ids)],
        )
        _touch(conn, playlist_id)
    return list(range(at, at + shift))


def remove_positions(db: sqlite_utils.Database, playlist_id: int, positions: Iterable[int]) -> None:
    """Remove the items at these positions (any order, repeats ignored); the rest close up.

    A position out of range is an IndexError and nothing is removed.
    """
    with transaction(db) as conn:
        _require(conn, playlist_id)
        stored = _stored_positions(conn, playlist_id)
        doomed = set(_check_positions(positions, len(stored)))
        conn.executemany(
            "DELETE FROM playlist_items WHERE playlist_id = ? AND position = ?",
            [(playlist_id, stored[p]) for p in sorted(doomed)],
        )
        kept = [old for i, old in enumerate(stored) if i not in doomed]
        _relayout(conn, playlist_id, [(old, new) for new, old in enumerate(kept)])
        _touch(conn, playlist_id)


def move(
    db: sqlite_utils.Database, playlist_id: int, positions: Iterable[int], to_position: int
) -> list[int]:
    """Move the items at `positions` (kept in their current order) to just before the item now at
    `to_position`; `to_position` = len(playlist) (or more) moves them to the end.

    This is the "drop before row" convention of list views: on [a, b, c, d], moving [0] to 4
    gives [b, c, d, a], moving [3] to 0 gives [d, a, b, c], moving [0] to 2 gives [b, a, c, d].
    Returns the new positions of the moved items.
    """
    if to_position < 0:
        raise ValueError(f"to_position must be >= 0, not {to_position}")
    with transaction(db) as conn:
        _require(conn, playlist_id)
        stored = _stored_positions(conn, playlist_id)
        chosen = _check_positions(positions, len(stored))
        picked = set(chosen)
        rest = [i for i in range(len(stored)) if i not in picked]
        insert_at = sum(1 for i in rest if i < to_position)
        order = rest[:insert_at] + chosen + rest[insert_at:]
        _relayout(conn, playlist_id, [(stored[i], new) for new, i in enumerate(order)])
        _touch(conn, playlist_id)
    return list(range(insert_at, insert_at + len(chosen)))


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def export(
    db: sqlite_utils.Database,
    playlist_id: int,
    dest: str | os.PathLike[str],
    fmt: str | None = None,
    relative: bool = True,
) -> Path:
    """Write the playlist to `dest` (format: `fmt`, else the extension); returns the file path."""
    row = db.execute("SELECT name FROM playlists WHERE id = ?", (playlist_id,)).fetchone()
    if row is None:
        raise PlaylistNotFound(playlist_id)
    entries = [
        playlist_formats.Entry(
            path=item["path"],
            title=item["title"],
            artist=item["artist"],
            album=item["album"],
            duration=item["duration"],
        )
        for item in items(db, playlist_id)
    ]
    return playlist_formats.write_playlist(dest, entries, fmt=fmt, relative=relative, name=row[0])


def import_file(
    db: sqlite_utils.Database,
    path: str | os.PathLike[str],
    name: str | None = None,
    only_if_changed: bool = False,
) -> ImportResult:
    """Import a playlist file, matching its entries to library tracks by exact absolute path.

    Entries not in the library are reported in `missing`, not added (scan them, then import
    again). A file imported before (same absolute path) updates that playlist in place: its items
    are replaced, `source_mtime` updated, and its name changed only when `name` is given. A new
    playlist is named `name`, else the title stored in the file, else the file's stem. With
    `only_if_changed=True`, a file whose mtime equals the stored `source_mtime` is not read at
    all (`unchanged=True`). Unreadable or invalid files raise `PlaylistFormatError`.
    """
    source = os.path.normpath(os.path.abspath(os.fspath(path)))
    try:
        mtime = os.stat(source).st_mtime  # before reading: a change mid-read is seen next time
    except OSError as exc:
        raise playlist_formats.PlaylistFormatError(source, exc.strerror or str(exc)) from exc
    if only_if_changed:
        row = db.execute(
            "SELECT id, source_mtime FROM playlists WHERE source_path = ?", (source,)
        ).fetchone()
        if row is not None and row[1] == mtime:
            return ImportResult(playlist_id=row[0], unchanged=True)

    parsed = playlist_formats.parse_playlist(source)
    new_name = _clean_name(name) if name is not None else None
    with transaction(db) as conn:
        by_path = _track_ids_by_path(conn, [e.path for e in parsed.entries])
        track_ids = [by_path[e.path] for e in parsed.entries if e.path in by_path]
        missing = list(dict.fromkeys(e.path for e in parsed.entries if e.path not in by_path))
        stamp = now()
        row = conn.execute("SELECT id FROM playlists WHERE source_path = ?", (source,)).fetchone()
        if row is None:
            default = parsed.title or Path(source).stem or Path(source).name
            cursor = conn.execute(
                "INSERT INTO playlists (name, source_path, source_mtime, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (new_name or _clean_name(default), source, mtime, stamp, stamp),
            )
            playlist_id = int(cursor.lastrowid)
        else:
            playlist_id = row[0]
            conn.execute(
                "UPDATE playlists SET name = COALESCE(?, name), source_mtime = ?, updated_at = ? "
                "WHERE id = ?",
                (new_name, mtime, stamp, playlist_id),
            )
        _replace_items(conn, playlist_id, track_ids)
    return ImportResult(
        playlist_id=playlist_id,
        matched=len(track_ids),
        missing=missing,
        skipped_urls=len(parsed.urls),
    )
