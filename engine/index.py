"""One model's similarity index: hnswlib HNSW over unit vectors, persisted inside the library DB.

Why inside SQLite: one file to back up and move, and the index state commits atomically with its
fingerprint of the embeddings table, so after a crash `open_index` can tell a current saved index
from a stale or half-written one and rebuild it from the embeddings (the source of truth).

Defaults, measured on 2 CPU cores: the hard case is uniform random unit vectors (5k x 64-d,
random queries), where M=16/ef=128 reached recall@10 0.975 and M=24/ef_construction=100/ef=200
0.999; ef_construction=200 bought nothing over 100 at twice the build time. On clustered 512-d
"library" vectors (bench/index_bench.py) the defaults give recall@10 1.000 at 10k and 100k with
sub-millisecond queries. M=24 costs 64 bytes per track over M=16, small next to 2 KiB vectors.
`similar()` asks for k >= 80, and hnswlib searches with max(ef, k).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import hnswlib
import numpy as np
import sqlite_utils

from . import embeddings
from .db import now, transaction

log = logging.getLogger(__name__)

DEFAULT_M = 24
DEFAULT_EF_CONSTRUCTION = 100
DEFAULT_EF = 200
# 64 MiB rows: far below SQLite's 1 GB blob limit (a 1M x 512-d index is ~2.2 GB) and small
# enough that save/load hold only one chunk of bytes in Python at a time.
CHUNK_SIZE = 64 * 2**20
FORMAT = 1
_MIN_CAPACITY = 1024
_GROWTH = 1.5  # geometric, but gentler than 2x: at 1M x 512-d each slot is ~2.2 KB of RAM
_READ_SIZE = 8 * 2**20
_CHECKPOINT_ABOVE = 64 * 2**20
_ADD_BATCH = 4096  # the lock is released between batches so GUI queries interleave with analysis
_SCRATCH_PREFIX = "musicssl-index-"
_SCRATCH_RE = re.compile(rf"^{_SCRATCH_PREFIX}(\d+)-")
_SCRATCH_STALE_S = 3600  # far longer than saving even a 2 GB index takes


def _hnswlib_version() -> str | None:
    try:
        return importlib.metadata.version("hnswlib")
    except importlib.metadata.PackageNotFoundError:
        return None


class IndexLoadError(RuntimeError):
    """The saved index cannot be used (absent, stale, truncated, corrupt); rebuild it."""


@dataclass(frozen=True)
class SavedState:
    count: int
    checksum: str
    params: dict
    updated_at: float


def read_state(db: sqlite_utils.Database, model_id: str) -> SavedState | None:
    row = db.conn.execute(
        "SELECT count, checksum, params, updated_at FROM index_state WHERE model_id = ?",
        (model_id,),
    ).fetchone()
    if row is None:
        return None
    try:
        params = json.loads(row[2])
    except ValueError:
        params = {}
    return SavedState(row[0], row[1], params if isinstance(params, dict) else {}, row[3])


def _scratch_dir(db: sqlite_utils.Database) -> str | None:
    """The DB's own folder for the temporary index file: it already has room for the index, while
    /tmp may be a RAM-backed tmpfs where a 2 GB file would double memory use."""
    for _, name, file in db.conn.execute("PRAGMA database_list"):
        if name == "main" and file:
            return str(Path(file).parent)
    return None


def _scratch(db: sqlite_utils.Database) -> tempfile.TemporaryDirectory:
    """A temporary folder for the index file, named with our pid.

    A kill -9 during save or load leaves that folder behind with a file as large as the index;
    those of dead processes are removed here. Only old ones: a process in another pid namespace
    (a sandboxed app beside a host CLI) can look dead while it is still writing its file."""
    folder = _scratch_dir(db)
    if folder is not None:
        _remove_stale_scratch(folder)
    return tempfile.TemporaryDirectory(prefix=f"{_SCRATCH_PREFIX}{os.getpid()}-", dir=folder)


def _remove_stale_scratch(folder: str) -> None:
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        match = _SCRATCH_RE.match(name)
        path = os.path.join(folder, name)
        if match and not _alive(int(match.group(1))) and _age(path) > _SCRATCH_STALE_S:
            shutil.rmtree(path, ignore_errors=True)


def _age(path: str) -> float:
    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return 0.0


def _alive(pid: int) -> bool:
    """Whether a process exists; True when unsure (on Windows os.kill(pid, 0) would kill it)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: another user's live process
        return True
    return True


class SimilarityIndex:
    """An HNSW index whose labels are track ids, safe to query from one thread while another adds.

    hnswlib must not run add_items and knn_query concurrently on one index, so every call into it
    holds `_lock`. Deletions are tracked here because hnswlib's Python API cannot report them and
    k must be clamped to the live count (knn_query raises when it cannot return k items).
    """

    def __init__(
        self,
        model_id: str,
        dim: int | None = None,
        *,
        M: int = DEFAULT_M,  # noqa: N803 - hnswlib's name
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef: int = DEFAULT_EF,
        max_elements: int = _MIN_CAPACITY,
        num_threads: int = -1,
        random_seed: int = 100,
    ) -> None:
        self.model_id = model_id
        self.M = M
        self.ef_construction = ef_construction
        self.num_threads = num_threads
        self.random_seed = random_seed
        self._ef = ef
        self._dim: int | None = None
        self._index: hnswlib.Index | None = None
        self._deleted: set[int] = set()
        self._lock = threading.RLock()
        if dim is not None:
            self._init(dim, max_elements)

    def _init(self, dim: int, capacity: int) -> None:
        index = hnswlib.Index(space="ip", dim=int(dim))
        index.init_index(
            max_elements=max(int(capacity), _MIN_CAPACITY),
            M=self.M,
            ef_construction=self.ef_construction,
            random_seed=self.random_seed,
        )
        index.set_ef(self._ef)
        self._index, self._dim = index, int(dim)

    # -- introspection -------------------------------------------------------------------------

    @property
    def dim(self) -> int | None:
        return self._dim

    @property
    def ef(self) -> int:
        return self._ef

    def set_ef(self, ef: int) -> None:
        """Query breadth: higher is more accurate and slower; does not need a rebuild."""
        with self._lock:
            self._ef = int(ef)
            if self._index is not None:
                self._index.set_ef(self._ef)

    @property
    def count(self) -> int:
        """Labels that queries can return (added minus removed)."""
        with self._lock:
            if self._index is None:
                return 0
            return self._index.element_count - len(self._deleted)

    def __len__(self) -> int:
        return self.count

    @property
    def capacity(self) -> int:
        with self._lock:
            return 0 if self._index is None else self._index.get_max_elements()

    @property
    def deleted(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._deleted)

    def params(self) -> dict:
        return {
            "dim": self._dim,
            "M": self.M,
            "ef_construction": self.ef_construction,
            "ef": self._ef,
            "max_elements": self.capacity,
        }

    # -- updates --------------------------------------------------------------------------------

    def add(self, ids: Iterable[int], vectors: np.ndarray) -> None:
        """Insert or update (same label = re-analysed track) vectors; grows capacity as needed."""
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
        ids = ids.reshape(-1)
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if len(ids) == 0:
            return
        if np.any(ids < 0):
            raise ValueError("track ids must be non-negative")
        vectors = embeddings.normalize(vectors)
        with self._lock:
            if self._index is None:
                self._init(vectors.shape[1], len(ids))
            if vectors.shape[1] != self._dim:
                raise ValueError(
                    f"vectors have {vectors.shape[1]} dimensions, index has {self._dim}"
                )
        for start in range(0, len(ids), _ADD_BATCH):
            part_ids = ids[start : start + _ADD_BATCH]
            with self._lock:
                index = self._index
                needed = index.element_count + len(part_ids)  # upper bound: updates need no slot
                if needed > index.get_max_elements():
                    grown = max(needed, int(index.get_max_elements() * _GROWTH) + 1)
                    index.resize_index(grown)
                index.add_items(
                    vectors[start : start + _ADD_BATCH], part_ids, num_threads=self.num_threads
                )
                # Adding a deleted label un-deletes it in hnswlib (without replace_deleted).
                self._deleted.difference_update(part_ids.tolist())

    def remove(self, ids: Iterable[int]) -> int:
        """Hide labels from queries (hnswlib marks them; their slots are not reused). Unknown or
        already removed ids are ignored. Returns how many were removed."""
        removed = 0
        with self._lock:
            if self._index is None:
                return 0
            for label in ids:
                label = int(label)
                if label in self._deleted:
                    continue
                try:
                    self._index.mark_deleted(label)
                except RuntimeError:  # label not in the index
                    continue
                self._deleted.add(label)
                removed += 1
        return removed

    # -- queries --------------------------------------------------------------------------------

    def query(self, vectors: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ids int64, cosine scores float32) per query vector, best first.

        A 1-d vector gives 1-d arrays; a (q, dim) matrix gives (q, k') arrays. k is clamped to the
        live count; in the rare case hnswlib still cannot fill a row (a graph cut up by deletions)
        the row is padded with id -1 and score -inf.
        """
        v = np.asarray(vectors, dtype=np.float32)
        single = v.ndim == 1
        v = np.atleast_2d(v)
        with self._lock:
            k = max(0, min(int(k), self.count))
            if self._index is None or k == 0:
                ids = np.zeros((len(v), 0), dtype=np.int64)
                scores = np.zeros((len(v), 0), dtype=np.float32)
            else:
                if v.shape[1] != self._dim:
                    raise ValueError(f"query has {v.shape[1]} dimensions, index has {self._dim}")
                try:
                    labels, dist = self._index.knn_query(v, k=k, num_threads=self.num_threads)
                except RuntimeError:
                    labels, dist = self._query_hard(v, k)
                ids = labels.astype(np.int64)
                scores = (1.0 - dist).astype(np.float32)
                scores[ids < 0] = -np.inf
        return (ids[0], scores[0]) if single else (ids, scores)

    def _query_hard(self, v: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """knn_query failed to find k live items: search wider, then row by row with smaller k."""
        index = self._index
        try:
            index.set_ef(max(self._ef, 4 * k))
            try:
                return index.knn_query(v, k=k, num_threads=self.num_threads)
            except RuntimeError:
                pass
            labels = np.full((len(v), k), -1, dtype=np.int64)
            dist = np.full((len(v), k), np.inf, dtype=np.float32)
            for row in range(len(v)):
                kk = k
                while kk > 0:
                    try:
                        got_l, got_d = index.knn_query(v[row], k=kk, num_threads=1)
                    except RuntimeError:
                        kk //= 2
                        continue
                    labels[row, :kk] = got_l[0].astype(np.int64)
                    dist[row, :kk] = got_d[0]
                    break
            return labels, dist
        finally:
            index.set_ef(self._ef)

    # -- construction and persistence ----------------------------------------------------------

    @classmethod
    def build(
        cls, db: sqlite_utils.Database, model_id: str, *, batch: int = 10000, **params
    ) -> SimilarityIndex:
        """A fresh index of every stored embedding of the model, read `batch` rows at a time."""
        n = embeddings.count(db, model_id)
        d = embeddings.dim(db, model_id)
        params.setdefault("max_elements", n + max(_MIN_CAPACITY, n // 32))
        index = cls(model_id, d, **params)
        for ids, matrix in embeddings.iter_all(db, model_id, batch=batch):
            index.add(ids, matrix)
        return index

    def save(self, db: sqlite_utils.Database, *, chunk_size: int = CHUNK_SIZE) -> None:
        """Persist to index_chunks + index_state in one transaction (all or nothing).

        hnswlib writes its file, which is streamed into the DB one chunk at a time, so peak extra
        memory is one chunk, not a second copy of the index (pickle would copy it whole). The
        checksum of the embeddings table is taken inside the same write transaction: it describes
        exactly the rows the index was built from, provided callers add to the index what they
        write to the table (the analysis job does both) before saving.
        """
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        with _scratch(db) as tmp:
            path = os.path.join(tmp, "index.bin")
            with self._lock:
                params = self.params()
                params.update(
                    format=FORMAT,
                    space="ip",
                    element_count=0 if self._index is None else self._index.element_count,
                    deleted=sorted(self._deleted),
                    hnswlib=_hnswlib_version(),
                )
                live = self.count
                if self._index is not None:
                    self._index.save_index(path)
            crcs: list[int] = []
            size = 0
            with transaction(db) as conn:
                conn.execute("DELETE FROM index_chunks WHERE model_id = ?", (self.model_id,))
                if self._index is not None:
                    with open(path, "rb") as f:
                        while data := f.read(chunk_size):
                            conn.execute(
                                "INSERT INTO index_chunks (model_id, seq, data) VALUES (?, ?, ?)",
                                (self.model_id, len(crcs), data),
                            )
                            crcs.append(zlib.crc32(data))
                            size += len(data)
                            del data
                params.update(bytes=size, chunk_crc32=crcs)
                conn.execute(
                    "INSERT OR REPLACE INTO index_state (model_id, count, checksum, params, "
                    "updated_at) VALUES (?, ?, ?, ?, ?)",
                    (
                        self.model_id,
                        live,
                        embeddings.checksum(conn, self.model_id),
                        json.dumps(params),
                        now(),
                    ),
                )
            if size > _CHECKPOINT_ABOVE and not db.conn.in_transaction:
                # The index went through the WAL, which keeps its peak size on disk: a 2 GB index
                # would leave a 2 GB -wal file. Best effort: with readers active it does less.
                db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    @classmethod
    def load(cls, db: sqlite_utils.Database, model_id: str) -> SimilarityIndex:
        """The saved index as it was saved, without checking it against the embeddings table
        (`open_index` does that). Corrupt or truncated bytes raise IndexLoadError before hnswlib
        sees them: hnswlib trusts its file and can crash the process on garbage."""
        state = read_state(db, model_id)
        if state is None:
            raise IndexLoadError(f"no saved index for model {model_id!r}")
        p = state.params
        try:
            if p.get("format") != FORMAT or p.get("space") != "ip":
                raise IndexLoadError(f"saved index format {p.get('format')!r} is not {FORMAT}")
            crcs = [int(c) for c in p["chunk_crc32"]]
            total = int(p["bytes"])
            element_count = int(p["element_count"])
            index = cls(
                model_id,
                None,
                M=int(p["M"]),
                ef_construction=int(p["ef_construction"]),
                ef=int(p["ef"]),
            )
            deleted = {int(x) for x in p["deleted"]}
            dim = p["dim"]
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexLoadError(f"saved index parameters are unreadable: {exc!r}") from exc
        if dim is None:
            if crcs or element_count:
                raise IndexLoadError("saved index has data but no dimension")
            return index
        with _scratch(db) as tmp:
            path = os.path.join(tmp, "index.bin")
            with open(path, "wb") as f:
                expected_seq, size = _copy_chunks(db.conn, model_id, crcs, f)
            if expected_seq != len(crcs) or size != total:
                raise IndexLoadError(
                    f"saved index is truncated: {expected_seq}/{len(crcs)} chunks, "
                    f"{size}/{total} bytes"
                )
            raw = hnswlib.Index(space="ip", dim=int(dim))
            try:
                raw.load_index(
                    path, max_elements=element_count + max(_MIN_CAPACITY, element_count // 32)
                )
            except (RuntimeError, ValueError, MemoryError) as exc:
                raise IndexLoadError(f"hnswlib cannot read the saved index: {exc}") from exc
        if raw.element_count != element_count:
            raise IndexLoadError(
                f"saved index holds {raw.element_count} items, its state says {element_count}"
            )
        raw.set_ef(index.ef)
        index._index, index._dim, index._deleted = raw, int(dim), deleted
        return index


def _copy_chunks(
    conn: sqlite3.Connection, model_id: str, crcs: list[int], out: BinaryIO
) -> tuple[int, int]:
    """Stream the saved chunks into `out`, checking order and CRCs; returns (chunks, bytes).

    Incremental blob reads (Python >= 3.11) copy a few MiB at a time: about 4x faster than
    fetching each 64 MiB value as one bytes object, which matters for the launch-time load.
    A save racing this read shows up as a CRC or count mismatch, and the caller rebuilds.
    """
    rows = conn.execute(
        "SELECT seq, rowid FROM index_chunks WHERE model_id = ? ORDER BY seq", (model_id,)
    ).fetchall()
    size = 0
    for expected, (seq, rowid) in enumerate(rows):
        if seq != expected or seq >= len(crcs):
            raise IndexLoadError(f"saved index chunk {seq} is unexpected")
        crc = 0
        try:
            if hasattr(conn, "blobopen"):
                with conn.blobopen("index_chunks", "data", rowid, readonly=True) as blob:
                    while piece := blob.read(_READ_SIZE):
                        crc = zlib.crc32(piece, crc)
                        out.write(piece)
                        size += len(piece)
            else:  # Python 3.10 has no blobopen
                row = conn.execute(
                    "SELECT data FROM index_chunks WHERE rowid = ?", (rowid,)
                ).fetchone()
                piece = b"" if row is None else row[0]
                crc = zlib.crc32(piece)
                out.write(piece)
                size += len(piece)
        except sqlite3.Error as exc:
            raise IndexLoadError(f"saved index chunk {seq} cannot be read: {exc}") from exc
        if crc != crcs[seq]:
            raise IndexLoadError(f"saved index chunk {seq} is corrupt (CRC mismatch)")
    return len(rows), size


def open_index(
    db: sqlite_utils.Database,
    model_id: str,
    *,
    M: int | None = None,  # noqa: N803
    ef_construction: int | None = None,
    ef: int | None = None,
    save: bool = True,
) -> SimilarityIndex:
    """The model's index, loaded when the saved one matches the embeddings table, else rebuilt.

    This is the self-healing path: a crash between writing embeddings and saving the index, a
    corrupt chunk, or a re-analysed track all leave a saved state whose count/checksum disagrees
    with the table (or fails to load), and the index is rebuilt from the embeddings and saved.
    Passing M or ef_construction different from the saved ones also rebuilds.
    """
    count_and_sum = embeddings.checksum(db, model_id)
    table_count = int(count_and_sum.split(":", 1)[0])
    state = read_state(db, model_id)
    reason = "no saved index"
    if state is not None:
        wanted = {"M": M, "ef_construction": ef_construction}
        changed = [k for k, v in wanted.items() if v is not None and state.params.get(k) != v]
        if changed:
            reason = f"parameters changed: {', '.join(changed)}"
        elif state.count != table_count or state.checksum != count_and_sum:
            reason = (
                f"saved index is stale ({state.count} items, checksum {state.checksum}; "
                f"table has {table_count}, checksum {count_and_sum})"
            )
        else:
            try:
                index = SimilarityIndex.load(db, model_id)
            except IndexLoadError as exc:
                reason = str(exc)
            else:
                if ef is not None:
                    index.set_ef(ef)
                return index
    log.info("rebuilding similarity index for %s: %s", model_id, reason)
    params = {
        k: v
        for k, v in {"M": M, "ef_construction": ef_construction, "ef": ef}.items()
        if v is not None
    }
    index = SimilarityIndex.build(db, model_id, **params)
    if save:
        if embeddings.checksum(db, model_id) == count_and_sum:
            index.save(db)
        else:
            # Rows changed while we read them; the index may miss some. Leave the state stale so
            # the next open rebuilds rather than trusting it.
            log.warning("embeddings of %s changed during the index build; not saving", model_id)
    return index
