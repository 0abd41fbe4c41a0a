"""Per-model track embeddings in SQLite: the one source of truth the similarity index is built from.

Vectors are stored as raw little-endian float32 bytes (no pickle, no numpy header), unit-normalised
on the way in so that inner product equals cosine everywhere downstream (hnswlib's "ip" space,
exact numpy checks, duplicate thresholds).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import sqlite_utils

from .errors import MusicSSLError

DTYPE = np.dtype("<f4")
# Keep IN (...) lists well below SQLite's bound-parameter limit (32766 since 3.32, 999 before).
_IN_CHUNK = 900

Connish = sqlite3.Connection | sqlite_utils.Database


# Settings key naming the model whose embeddings queries use: the last one a finished analysis
# filled. Apart from the active model, so switching models leaves "find similar" on the old space
# until the new one is complete — and answering a query never needs torch (a 2 s import here).
INDEX_MODEL_KEY = "index_model"


class NotAnalyzedError(MusicSSLError, LookupError):
    """A track has no embedding for the model yet: it must be analysed before it can be a seed."""

    def __init__(self, track_id: int, model_id: str | None = None):
        self.track_id = int(track_id)
        self.model_id = model_id
        model = f" with model {model_id!r}" if model_id else ""
        super().__init__(
            f"track {self.track_id} has not been analysed{model} yet: analyse it first "
            "(musicssl analyze) to use it for similarity"
        )


def _raw(conn: Connish) -> sqlite3.Connection:
    return conn.conn if isinstance(conn, sqlite_utils.Database) else conn


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Unit-normalise rows (float32); a zero or non-finite row is a bug upstream, so it raises."""
    v = np.asarray(vectors, dtype=np.float32)
    squeeze = v.ndim == 1
    v = np.atleast_2d(v)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise ValueError("embedding vectors must be finite and non-zero")
    v = v / norms
    return v[0] if squeeze else v


def dim(db: Connish, model_id: str) -> int | None:
    """Dimension of the stored vectors of a model (None when it has none), from one row's length."""
    sql = "SELECT length(vector) FROM embeddings WHERE model_id = ? LIMIT 1"
    row = _raw(db).execute(sql, (model_id,)).fetchone()
    return None if row is None else row[0] // DTYPE.itemsize


def put(conn: Connish, model_id: str, items: Iterable[tuple[int, np.ndarray]]) -> int:
    """Store (replace) vectors; call inside `db.transaction` so a batch lands all at once.

    Every vector of a model must have the same dimension; mixing would silently corrupt the index,
    so it is checked against what is already stored. Returns the number of rows written.
    """
    raw = _raw(conn)
    expected = dim(raw, model_id)
    rows = []
    for track_id, vector in items:
        v = normalize(np.asarray(vector).reshape(-1))
        if expected is None:
            expected = v.shape[0]
        elif v.shape[0] != expected:
            raise ValueError(
                f"embedding for track {track_id} has {v.shape[0]} dimensions, "
                f"model {model_id!r} uses {expected}"
            )
        rows.append((int(track_id), model_id, v.astype(DTYPE, copy=False).tobytes()))
    raw.executemany(
        "INSERT OR REPLACE INTO embeddings (track_id, model_id, vector) VALUES (?, ?, ?)", rows
    )
    return len(rows)


def _matrix(blobs: Sequence[bytes]) -> np.ndarray:
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    d = len(blobs[0]) // DTYPE.itemsize
    return np.frombuffer(b"".join(blobs), dtype=DTYPE).reshape(len(blobs), d).astype(np.float32)


def _fetch(raw: sqlite3.Connection, model_id: str, ids: Sequence[int]) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        part = ids[start : start + _IN_CHUNK]
        marks = ",".join("?" * len(part))
        found.update(
            raw.execute(
                f"SELECT track_id, vector FROM embeddings WHERE model_id = ? "  # noqa: S608
                f"AND track_id IN ({marks})",
                (model_id, *part),
            ).fetchall()
        )
    return found


def get(db: Connish, model_id: str, track_ids: Sequence[int]) -> np.ndarray:
    """Vectors for `track_ids` in that order, shape (len, dim); raises NotAnalyzedError on a gap."""
    ids = [int(t) for t in track_ids]
    found = _fetch(_raw(db), model_id, ids)
    for t in ids:
        if t not in found:
            raise NotAnalyzedError(t, model_id)
    return _matrix([found[t] for t in ids])


def get_present(
    db: Connish, model_id: str, track_ids: Iterable[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, matrix) for those of `track_ids` that have a vector, in the given order; for callers
    that filter a candidate set (a tag) where unanalysed tracks are simply not candidates."""
    ids = [int(t) for t in track_ids]
    found = _fetch(_raw(db), model_id, ids)
    present = [t for t in ids if t in found]
    return np.asarray(present, dtype=np.int64), _matrix([found[t] for t in present])


def iter_all(
    db: Connish, model_id: str, batch: int = 10000
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """All (ids, matrix) of a model in track-id order, `batch` rows at a time.

    Keyset pagination on the primary key keeps each step an index seek, and only one batch of
    vectors is ever held, so building a 1M-track index does not need a second full copy.
    """
    raw = _raw(db)
    last = -(2**63)
    while True:
        rows = raw.execute(
            "SELECT track_id, vector FROM embeddings WHERE model_id = ? AND track_id > ? "
            "ORDER BY track_id LIMIT ?",
            (model_id, last, batch),
        ).fetchall()
        if not rows:
            return
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        yield ids, _matrix([r[1] for r in rows])
        last = int(ids[-1])
        if len(rows) < batch:
            return


def delete(conn: Connish, model_id: str, track_ids: Iterable[int]) -> int:
    """Remove vectors; also forgets the saved index state of the model (see `checksum`)."""
    raw = _raw(conn)
    ids = [(model_id, int(t)) for t in track_ids]
    before = raw.total_changes
    raw.executemany("DELETE FROM embeddings WHERE model_id = ? AND track_id = ?", ids)
    deleted = raw.total_changes - before
    if deleted:
        # Delete-then-reinsert of the row holding the largest rowid can get that same rowid back
        # (SQLite hands out max(rowid)+1), which `checksum` could not tell apart. Dropping the
        # saved state makes the next `open_index` rebuild unless the live index is saved again.
        raw.execute("DELETE FROM index_state WHERE model_id = ?", (model_id,))
    return deleted


def count(db: Connish, model_id: str) -> int:
    sql = "SELECT count(*) FROM embeddings WHERE model_id = ?"
    return _raw(db).execute(sql, (model_id,)).fetchone()[0]


def checksum(db: Connish, model_id: str) -> str:
    """A cheap fingerprint of a model's embeddings, to tell whether a saved index is still current.

    It reads only the primary-key index (model_id, track_id, rowid), never a vector, so it takes
    milliseconds at 100k rows. It still notices a re-analysed track whose row count and ids are
    unchanged: INSERT OR REPLACE deletes the old row and inserts a new one with a fresh rowid
    (max(rowid) + 1, allocated while the old row still exists), so total(rowid) moves. Adding or
    removing a track changes count and total(track_id). total() is exact here: float64 sums of
    integers stay exact below 2**53.
    """
    sql = "SELECT count(*), total(track_id), total(rowid) FROM embeddings WHERE model_id = ?"
    n, ids, rowids = _raw(db).execute(sql, (model_id,)).fetchone()
    return f"{n}:{int(ids)}:{int(rowids)}"


def index_model(db: Connish) -> str | None:
    row = (
        _raw(db).execute("SELECT value FROM settings WHERE key = ?", (INDEX_MODEL_KEY,)).fetchone()
    )
    return row[0] if row else None


def publish_index_model(conn: Connish, model_id: str, complete: bool) -> None:
    """Point queries at a model's space once it is complete, or now if no space is published."""
    verb = "REPLACE" if complete else "IGNORE"
    _raw(conn).execute(
        f"INSERT OR {verb} INTO settings (key, value) VALUES (?, ?)",  # noqa: S608 - constant
        (INDEX_MODEL_KEY, model_id),
    )
