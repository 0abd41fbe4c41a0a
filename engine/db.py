"""The library database: one SQLite file, opened the same way everywhere, migrated forward on open.

Hot data lives in typed columns and real tables with indexes (beets' flexible attributes are slow
to filter; the GUI filters and sorts 100k rows). Schema changes are forward migrations numbered by
`PRAGMA user_version`; an existing library is backed up before it is migrated.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from .errors import MusicSSLError

# 16 KiB pages keep 2 KiB embedding rows dense (a 4 KiB page holds only one); it only takes effect
# on a new file, before the first table exists.
PAGE_SIZE = 16384
BUSY_TIMEOUT_MS = 10_000

TRACK_STATUSES = ("new", "analyzed", "error")
TAG_SOURCES = ("file", "user", "auto")

# v1: what a scanned library needs (tracks, tags, playlists, settings).
_V1 = """
CREATE TABLE tracks (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER,
    mtime REAL,
    duration REAL,
    duration_decoded INTEGER NOT NULL DEFAULT 0,
    sample_rate INTEGER,
    channels INTEGER,
    codec TEXT,
    title TEXT,
    artist TEXT,
    album TEXT,
    album_artist TEXT,
    genre TEXT,
    year INTEGER,
    track_number INTEGER,
    status TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'analyzed', 'error')),
    error TEXT,
    missing INTEGER NOT NULL DEFAULT 0,
    added_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX idx_tracks_status ON tracks(status);
CREATE INDEX idx_tracks_artist ON tracks(artist COLLATE NOCASE);
CREATE INDEX idx_tracks_album ON tracks(album COLLATE NOCASE);
CREATE INDEX idx_tracks_title ON tracks(title COLLATE NOCASE);
CREATE INDEX idx_tracks_genre ON tracks(genre COLLATE NOCASE);
CREATE INDEX idx_tracks_year ON tracks(year);
CREATE INDEX idx_tracks_missing ON tracks(missing);

-- score: 1.0 for file tags and accepted user tags, 0.0 for a user's explicit "not this tag"
-- (a negative label for fine-tuning), the model's probability for auto tags.
CREATE TABLE tags (
    track_id INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('file', 'user', 'auto')),
    score REAL NOT NULL DEFAULT 1.0,
    PRIMARY KEY (track_id, tag, source)
);
CREATE INDEX idx_tags_tag ON tags(tag COLLATE NOCASE, source);

CREATE TABLE playlists (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    source_path TEXT UNIQUE,
    source_mtime REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);

CREATE TABLE playlist_items (
    playlist_id INTEGER NOT NULL REFERENCES playlists(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    track_id INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    PRIMARY KEY (playlist_id, position)
);
CREATE INDEX idx_playlist_items_track ON playlist_items(track_id);

-- Folders the user added, rescanned on start; also the roots against which "missing" is judged.
CREATE TABLE library_folders (
    path TEXT PRIMARY KEY,
    added_at REAL NOT NULL,
    last_scan_at REAL
);

-- Things under a scanned folder that are not tracks but failed (unreadable folder, symlink loop).
CREATE TABLE scan_errors (
    path TEXT PRIMARY KEY,
    error TEXT NOT NULL,
    seen_at REAL NOT NULL
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# v2: what analysis needs (models, embeddings per model, the persisted similarity index).
_V2 = """
CREATE TABLE models (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    config TEXT NOT NULL,
    added_at REAL NOT NULL
);

-- A narrow table so 2 KiB vectors pack densely; model_id keeps spaces of different models apart.
CREATE TABLE embeddings (
    track_id INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model_id, track_id)
);
CREATE INDEX idx_embeddings_track ON embeddings(track_id);

CREATE TABLE index_state (
    model_id TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    params TEXT NOT NULL,
    updated_at REAL NOT NULL
);

-- The hnswlib index as bytes, split in chunks: a large index exceeds SQLite's 1 GB blob limit.
CREATE TABLE index_chunks (
    model_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (model_id, seq)
);
"""


def _script(sql: str) -> Callable[[sqlite3.Connection], None]:
    def apply(conn: sqlite3.Connection) -> None:
        # executescript() would COMMIT first; run statement by statement inside our transaction.
        code = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
        for statement in code.split(";"):
            if statement.strip():
                conn.execute(statement)

    return apply


# v3: each track's mean tag probabilities per model, so auto tags can be re-derived when the
# thresholds change without re-analysing (engine/auto_tags.py).
_V3 = """
CREATE TABLE tag_probs (
    model_id TEXT NOT NULL,
    track_id INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    probs BLOB NOT NULL,
    PRIMARY KEY (model_id, track_id)
);
CREATE INDEX idx_tag_probs_track ON tag_probs(track_id);
"""

# v4: each track's per-excerpt similarity vectors per model, for re-ranking "find similar" by
# set matching (engine/excerpt_sets.py).
_V4 = """
CREATE TABLE excerpt_sets (
    model_id TEXT NOT NULL,
    track_id INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    dim INTEGER NOT NULL,
    vectors BLOB NOT NULL,
    PRIMARY KEY (model_id, track_id)
);
CREATE INDEX idx_excerpt_sets_track ON excerpt_sets(track_id);
"""

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _script(_V1),
    _script(_V2),
    _script(_V3),
    _script(_V4),
]
SCHEMA_VERSION = len(MIGRATIONS)


class DatabaseError(MusicSSLError, RuntimeError):
    """The library file cannot be used (newer schema, not a database, unwritable)."""


def _backup(conn: sqlite3.Connection, path: Path, version: int) -> Path:
    """A consistent copy (SQLite's online backup API) of the DB as it is before migrating.

    It is written under a `.partial` name and renamed when complete, so a crash mid-copy never
    leaves a file that looks like a good backup."""
    target = path.with_name(f"{path.name}.v{version}-{time.strftime('%Y%m%d-%H%M%S')}.bak")
    partial = target.with_name(target.name + ".partial")
    with contextlib.closing(sqlite3.connect(partial)) as dest:
        conn.backup(dest)
    os.replace(partial, target)
    return target


def migrate(conn: sqlite3.Connection, path: Path | None, target: int = SCHEMA_VERSION) -> int:
    """Apply the migrations after the file's version up to `target`, each in its own transaction."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise DatabaseError(
            f"{path}: schema version {current} is newer than this MusicSSL ({SCHEMA_VERSION}); "
            "upgrade MusicSSL to open it"
        )
    if current < target and current > 0 and path is not None:
        _backup(conn, path, current)
    for version in range(current, target):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process opening the same old file may have
            # applied this step while we waited, and running it twice fails ("table exists").
            if conn.execute("PRAGMA user_version").fetchone()[0] == version:
                MIGRATIONS[version](conn)
                conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return target


def connect(
    path: str | os.PathLike[str], *, migrate_to: int = SCHEMA_VERSION
) -> sqlite_utils.Database:
    """Open (creating if needed) a library DB with WAL and foreign keys, migrated forward."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Autocommit at the driver level; we open explicit transactions (see `transaction`).
        conn = sqlite3.connect(
            path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        # Saving a large index passes through the WAL; don't leave a file that size behind.
        conn.execute("PRAGMA journal_size_limit = 67108864")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, path, migrate_to)
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{path}: cannot open the library database: {exc}") from exc
    return sqlite_utils.Database(conn)


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite3.Connection]:
    """One IMMEDIATE write transaction, rolled back on any error; nested calls join the outer one.

    IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout instead of one
    failing half-way with SQLITE_BUSY. Write with `conn.execute`/`executemany` inside it:
    sqlite-utils' own write helpers wrap themselves in `with conn:`, which would commit early.
    """
    conn = db.conn
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def now() -> float:
    return time.time()
