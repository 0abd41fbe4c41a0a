"""Excerpt sets: each track's per-excerpt similarity vectors, and re-ranking by set matching.

A track vector is the mean over its excerpts, so a piece with several sections becomes their
blend, and two tracks of one soundtrack (one composer, one palette) can blend closer than the two
halves of one piece. Set matching compares the excerpts themselves: each excerpt of one track
finds its best match among the other's (the symmetric Chamfer similarity of the two sets, the
"late interaction" of multi-vector retrieval such as ColBERT), so a section that recurs counts in
full. "Find similar" and the identification measure rank by
`SET_WEIGHT` · set similarity + (1 − `SET_WEIGHT`) · cosine of the track vectors, re-ranking the
index's nearest candidates; the HNSW index itself stays one vector per track.

Chosen on the corpus's validation soundtracks only (103 real tracks; v9, 16 excerpts per track,
docs/MODEL_CARD.md): groups of four of a first half's excerpts find the track's second half
0.908 → 0.927 of the time (206 queries; weight 0.75: 0.932, set similarity alone 0.903), whole
first halves 0.961 → 0.971, soundtrack R@1 and M@10 level (on test later: 0.864 → 0.889). Equal
weights were taken, not the best cell. Written here rather than taken from a library: hnswlib,
FAISS and the like index single vectors; a set-to-set score is a few lines of numpy.

Sets are stored as int8, each vector scaled to its largest component and re-normalised when read
(on the val sets above no ranking changed against float32; scores moved by at most 0.0014): a
16-excerpt set of the shipped model is 5.3 KB, ~670 MB in SQLite for a 100,000-track library
(docs/BENCHMARKS.md). At most `MAX_VECTORS` per track: the "all" policy merges neighbouring
excerpts in pairs as a long file goes on (`SetBuilder`), so memory and storage stay bounded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

import numpy as np
import sqlite_utils

SET_WEIGHT = 0.5
# "find similar" re-ranks the nearest admissible candidates by cosine (after the library's caps
# and filters): at least this many, or twice the list asked for. Fetching ~50 sets costs about
# a millisecond; re-ranking every candidate an artist cap skips past cost ~40 ms at 100k tracks
# (docs/BENCHMARKS.md). Evaluation re-ranks the same pool (`blended_matrix`).
RERANK_POOL = 50
MAX_VECTORS = 64
DTYPE = np.dtype("i1")
_IN_CHUNK = 900

Connish = sqlite3.Connection | sqlite_utils.Database


class SetBuilder:
    """Running per-excerpt descriptors of one track, at most `cap` of them in time order.

    When a new excerpt would exceed the cap, neighbouring groups are merged in pairs and every
    later group takes twice as many excerpts, so an hour-long mix keeps a set spread over the
    whole file in constant memory.
    """

    def __init__(self, cap: int = MAX_VECTORS):
        if cap < 2 or cap % 2:
            raise ValueError("an excerpt set's cap must be an even number of at least 2")
        self.cap = cap
        self.group = 1  # excerpts per stored vector from now on
        self._sums: list[np.ndarray] = []
        self._counts: list[int] = []

    def add(self, descriptor: np.ndarray) -> None:
        d = np.asarray(descriptor, np.float64)
        if self._counts and self._counts[-1] < self.group:
            self._sums[-1] = self._sums[-1] + d
            self._counts[-1] += 1
            return
        if len(self._sums) == self.cap:
            pairs = range(0, self.cap, 2)
            self._sums = [self._sums[i] + self._sums[i + 1] for i in pairs]
            self._counts = [self._counts[i] + self._counts[i + 1] for i in pairs]
            self.group *= 2
        self._sums.append(d.copy())
        self._counts.append(1)

    def __len__(self) -> int:
        return len(self._sums)

    def means(self) -> np.ndarray:
        """(k, D) mean descriptor of each stored group, in time order."""
        return np.stack(self._sums) / np.asarray(self._counts, np.float64)[:, None]


def set_similarities(query: np.ndarray, sets: Sequence[np.ndarray]) -> np.ndarray:
    """Symmetric Chamfer similarity of the query set with each of `sets` (rows: unit vectors),
    from one matrix product over all their vectors."""
    if not len(sets):
        return np.zeros(0)
    sizes = np.array([len(s) for s in sets])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    m = np.asarray(query, np.float32) @ np.concatenate(sets).astype(np.float32, copy=False).T
    query_side = np.maximum.reduceat(m, starts, axis=1).mean(axis=0)
    set_side = np.add.reduceat(m.max(axis=0), starts) / sizes
    return 0.5 * (query_side + set_side)


def blend(cosine: float | np.ndarray, set_score: float | np.ndarray) -> float | np.ndarray:
    return SET_WEIGHT * set_score + (1.0 - SET_WEIGHT) * cosine


def pool_size(n: int) -> int:
    """How many of the nearest admissible candidates a list of n is re-ranked from."""
    return max(2 * n, RERANK_POOL)


def blended_matrix(
    queries: np.ndarray,
    query_sets: Sequence[np.ndarray],
    candidates: np.ndarray,
    candidate_sets: Sequence[np.ndarray],
    pool: int = RERANK_POOL,
) -> np.ndarray:
    """(Q, C) ranking scores of unit track vectors and their excerpt sets, as "find similar"
    ranks its candidates: each query's `pool` nearest by cosine re-ranked by the blend, the rest
    after them in cosine order."""
    cos = np.asarray(queries, np.float64) @ np.asarray(candidates, np.float64).T
    if not cos.size:
        return cos
    sets = np.stack([set_similarities(q, candidate_sets) for q in query_sets]).reshape(cos.shape)
    scores = cos - 4.0  # below any blend of two cosines in [-1, 1]
    nearest = np.argsort(-cos, axis=1, kind="stable")[:, :pool]
    rows = np.arange(cos.shape[0])[:, None]
    scores[rows, nearest] = blend(cos[rows, nearest], sets[rows, nearest])
    return scores


# ---------------------------------------------------------------------------------------------
# storage: one row per (model, track), next to the track's vector in `embeddings`


def _raw(conn: Connish) -> sqlite3.Connection:
    return conn.conn if isinstance(conn, sqlite_utils.Database) else conn


def _encode(track_id: int, vectors: np.ndarray) -> tuple[int, bytes]:
    v = np.atleast_2d(np.asarray(vectors, np.float32))
    if not v.size or not np.all(np.isfinite(v)):
        raise ValueError(f"the excerpt set of track {track_id} is empty or not finite")
    peak = np.abs(v).max(axis=1, keepdims=True)
    if not np.all(peak > 0):
        raise ValueError(f"the excerpt set of track {track_id} has a zero vector")
    return v.shape[1], np.round(v / peak * 127).astype(DTYPE).tobytes()


def _decode(blob: bytes, dim: int) -> np.ndarray:
    v = np.frombuffer(blob, DTYPE).reshape(-1, dim).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def as_stored(vectors: np.ndarray) -> np.ndarray:
    """The set as the library reads it back, so evaluation scores what the app ranks with."""
    dim, blob = _encode(-1, vectors)
    return _decode(blob, dim)


def put(conn: Connish, model_id: str, items: Iterable[tuple[int, np.ndarray]]) -> int:
    """Store (replace) sets of unit vectors; call inside the transaction that stores the track
    vectors, so a track never has one without the other."""
    rows = [(model_id, int(t), *_encode(int(t), v)) for t, v in items]
    _raw(conn).executemany(
        "INSERT OR REPLACE INTO excerpt_sets (model_id, track_id, dim, vectors) "
        "VALUES (?, ?, ?, ?)",
        rows,
    )
    return len(rows)


def get_present(db: Connish, model_id: str, track_ids: Iterable[int]) -> dict[int, np.ndarray]:
    """{track id: (k, D) float32 set of unit vectors} for those of `track_ids` that have one."""
    ids = [int(t) for t in track_ids]
    rows: list[tuple[int, int, bytes]] = []
    raw = _raw(db)
    for start in range(0, len(ids), _IN_CHUNK):
        part = ids[start : start + _IN_CHUNK]
        marks = ",".join("?" * len(part))
        rows += raw.execute(
            "SELECT track_id, dim, vectors FROM excerpt_sets WHERE model_id = ? "  # noqa: S608
            f"AND track_id IN ({marks})",
            (model_id, *part),
        ).fetchall()
    if not rows:
        return {}
    dims = {dim for _, dim, _ in rows}
    if len(dims) > 1:  # one model, one space: only a damaged library gets here
        raise ValueError(f"excerpt sets of model {model_id!r} mix dimensions {sorted(dims)}")
    # One decode for all rows: "find similar" reads ~100 sets per query.
    dim = dims.pop()
    everything = _decode(b"".join(blob for _, _, blob in rows), dim)
    sizes = [len(blob) // (dim * DTYPE.itemsize) for _, _, blob in rows]
    parts = np.split(everything, np.cumsum(sizes)[:-1])
    return {tid: part for (tid, _, _), part in zip(rows, parts, strict=True)}
