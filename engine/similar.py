"""Similarity queries over the index: "more like these tracks" and near-duplicate recordings.

The index knows vectors only; the library rules (seeds excluded, missing files hidden, artist and
album caps, a tag filter) are applied afterwards on an over-fetched candidate list that grows until
enough candidates survive or the index is exhausted, so results never silently come up short.
When the seeds have excerpt sets, the nearest admissible candidates (at least 50) are then
re-ranked by cosine blended with excerpt-set matching (engine/excerpt_sets.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import sqlite_utils

from . import embeddings, excerpt_sets
from .embeddings import NotAnalyzedError
from .index import SimilarityIndex

__all__ = [
    "DUPLICATE_THRESHOLD",
    "WHITENED_DUPLICATE_THRESHOLD",
    "duplicate_threshold",
    "TAG_MIN_SCORE",
    "NotAnalyzedError",
    "Result",
    "duplicates",
    "similar",
    "similar_to_vector",
]

# A tag counts when some source gives it at least this score (file/user tags are 1.0, auto tags a
# probability) and the user has not explicitly rejected it (a user row with a score below it).
TAG_MIN_SCORE = 0.5

# Near-duplicate cut-off on cosine similarity of unit track embeddings. A track embedding is the
# mean over many excerpts, so codec noise (MP3/AAC/Opus at ordinary bitrates vs FLAC) averages out
# and the same recording lands at ~0.99+; different recordings, even of one album or one song
# (live vs studio), differ in content over whole excerpts and sit clearly lower. 0.98 leaves room
# for low-bitrate encodes while staying above same-album neighbours. It has not yet been measured
# against a trained model's embeddings of re-encoded audio: treat it as a tunable default.
DUPLICATE_THRESHOLD = 0.98

# The same cut-off for a bundle whose similarity vector is whitened (EmbeddingModel.similarity).
# Whitening spreads the space, the within-track step (v5) more than PCA alone (v4).
# bench/duplicates_bench.py on the 42 tracks of the corpus's val soundtracks plus a mono MP3
# re-encode of each: with v5, different recordings reached at most cosine 0.81 and a track and
# its re-encode at least 0.925 (128 kb/s) or 0.873 (64 kb/s); with v4, 0.85, 0.964 and 0.887.
# 0.86 finds every pair of both bundles at both bitrates and stays above every different pair
# (docs/BENCHMARKS.md); v4's old 0.92 found only 33 of the 42 64 kb/s pairs with v5. The
# statistics v6 and v7 append bring different recordings closer (v7: at most 0.846, the
# tightest margin yet) and re-encodes too (at least 0.902): 0.86 still separates them, and v8's
# encoder widened the gap (different at most 0.774, re-encodes at least 0.921; v9: 0.795, 0.938).
WHITENED_DUPLICATE_THRESHOLD = 0.86


def duplicate_threshold(whitened: bool) -> float:
    """The near-duplicate cut-off for a model's similarity space."""
    return WHITENED_DUPLICATE_THRESHOLD if whitened else DUPLICATE_THRESHOLD


# With a tag filter, up to this many tagged tracks are ranked exactly (one matmul over their
# vectors) instead of fishing for them in the whole index, which for a rare tag would mean
# growing k to the full library.
EXACT_TAG_LIMIT = 20000

_OVERFETCH = 4
_IN_CHUNK = 900
_VARIOUS = {"various artists", "various", "va", "verschiedene interpreten", "artistes divers"}


@dataclass(frozen=True)
class Result:
    track_id: int
    score: float
    path: str
    title: str | None
    artist: str | None
    album: str | None


@dataclass(frozen=True)
class _Meta:
    path: str
    title: str | None
    artist: str | None
    album: str | None
    album_artist: str | None
    missing: bool

    def artist_key(self) -> str | None:
        """Who a per-artist cap counts: the album artist, except on compilations where the album
        artist ("Various Artists") says nothing about who plays the track."""
        album_artist = (self.album_artist or "").strip().casefold()
        if album_artist and album_artist not in _VARIOUS:
            return album_artist
        return (self.artist or "").strip().casefold() or album_artist or None

    def album_key(self) -> tuple[str, str] | None:
        """Albums are keyed with their album artist: two "Greatest Hits" are different albums."""
        album = (self.album or "").strip().casefold()
        if not album:
            return None
        owner = (self.album_artist or self.artist or "").strip().casefold()
        return (owner, album)


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), _IN_CHUNK):
        yield ids[start : start + _IN_CHUNK]


def _metadata(db: sqlite_utils.Database, ids: Sequence[int]) -> dict[int, _Meta]:
    out: dict[int, _Meta] = {}
    for part in _chunks(list(ids)):
        marks = ",".join("?" * len(part))
        rows = db.conn.execute(
            "SELECT id, path, title, artist, album, album_artist, missing FROM tracks "  # noqa: S608
            f"WHERE id IN ({marks})",
            tuple(part),
        )
        for tid, path, title, artist, album, album_artist, missing in rows:
            out[tid] = _Meta(path, title, artist, album, album_artist, bool(missing))
    return out


def _tagged(db: sqlite_utils.Database, tag: str) -> set[int]:
    rows = db.conn.execute(
        "SELECT track_id FROM tags WHERE tag = ? COLLATE NOCASE GROUP BY track_id "
        "HAVING max(score >= ?) AND NOT max(source = 'user' AND score < ?)",
        (tag, TAG_MIN_SCORE, TAG_MIN_SCORE),
    )
    return {r[0] for r in rows}


def _unit(vector: np.ndarray) -> np.ndarray:
    return embeddings.normalize(np.asarray(vector, dtype=np.float32).reshape(-1))


def _select(
    ranked: Iterable[tuple[int, float]],
    meta: dict[int, _Meta],
    n: int,
    exclude_ids: Collection[int],
    exclude_albums: Collection[tuple[str, str]],
    max_per_artist: int | None,
    max_per_album: int | None,
    allowed: Collection[int] | None,
) -> list[Result]:
    results: list[Result] = []
    per_artist: Counter[str] = Counter()
    per_album: Counter[tuple[str, str]] = Counter()
    for tid, score in ranked:
        if tid < 0 or tid in exclude_ids or (allowed is not None and tid not in allowed):
            continue
        m = meta.get(tid)
        if m is None or m.missing:  # deleted from the library, or the file is gone for now
            continue
        album = m.album_key()
        if album is not None and album in exclude_albums:
            continue
        artist = m.artist_key()
        if (
            max_per_artist is not None
            and artist is not None
            and per_artist[artist] >= max_per_artist
        ):
            continue
        if max_per_album is not None and album is not None and per_album[album] >= max_per_album:
            continue
        if artist is not None:
            per_artist[artist] += 1
        if album is not None:
            per_album[album] += 1
        results.append(Result(tid, float(score), m.path, m.title, m.artist, m.album))
        if len(results) >= n:
            break
    return results


def _reranked(
    db: sqlite_utils.Database, model_id: str, query_set: np.ndarray, pool: list[Result], n: int
) -> list[Result]:
    """The best n of `pool` (admissible, in cosine order) by cosine blended with excerpt-set
    similarity (engine/excerpt_sets.py).

    Set scores run lower than cosines of track means, so a blend is only fair among candidates
    that all have a set: while some lack one (analysed before sets existed and waiting for their
    re-analysis), the cosine order is kept."""
    sets = excerpt_sets.get_present(db, model_id, [r.track_id for r in pool])
    if len(sets) < len(pool):
        return pool[:n]
    found = excerpt_sets.set_similarities(query_set, [sets[r.track_id] for r in pool])
    blended = excerpt_sets.blend(np.array([r.score for r in pool]), found)
    order = np.argsort(-blended, kind="stable")[:n]
    return [replace(pool[i], score=float(blended[i])) for i in order]


def similar_to_vector(
    db: sqlite_utils.Database,
    index: SimilarityIndex,
    vector: np.ndarray,
    n: int = 20,
    *,
    exclude_ids: Collection[int] = (),
    exclude_albums: Collection[tuple[str, str]] = (),
    max_per_artist: int | None = None,
    max_per_album: int | None = None,
    tag: str | None = None,
    model_id: str | None = None,
    query_set: np.ndarray | None = None,
) -> list[Result]:
    """Library tracks closest to an embedding, e.g. of an audio file that is not in the library
    (embedded by the same model as the index). With the query's excerpt set, the nearest
    admissible candidates are re-ranked by set matching as well (`_reranked`)."""
    if n <= 0:
        return []
    model_id = model_id or index.model_id
    q = _unit(vector)
    exclude_ids = set(exclude_ids)
    exclude_albums = set(exclude_albums)
    meta: dict[int, _Meta] = {}
    want = n if query_set is None else excerpt_sets.pool_size(n)

    def pick(ids: np.ndarray, scores: np.ndarray, allowed: set[int] | None) -> list[Result]:
        todo = [int(t) for t in ids if int(t) not in meta and t >= 0]
        meta.update(_metadata(db, todo))
        ranked = zip(ids.tolist(), scores.tolist(), strict=True)
        return _select(
            ranked, meta, want, exclude_ids, exclude_albums, max_per_artist, max_per_album, allowed
        )

    allowed: set[int] | None = None
    ranked_ids = ranked_scores = None
    if tag is not None:
        allowed = _tagged(db, tag)
        if len(allowed) <= EXACT_TAG_LIMIT:
            ranked_ids, matrix = embeddings.get_present(db, model_id, sorted(allowed))
            if len(ranked_ids) == 0:
                return []
            ranked_scores = matrix @ q
            order = np.argsort(-ranked_scores, kind="stable")
            ranked_ids, ranked_scores = ranked_ids[order], ranked_scores[order]

    if ranked_ids is not None:
        live = len(ranked_ids)

        def top(k: int) -> tuple[np.ndarray, np.ndarray]:
            return ranked_ids[:k], ranked_scores[:k]
    else:
        live = index.count

        def top(k: int) -> tuple[np.ndarray, np.ndarray]:
            return index.query(q, k)

    k = min(live, want * _OVERFETCH + len(exclude_ids))
    while k > 0:
        results = pick(*top(k), allowed)
        if len(results) >= want or k >= live:
            if query_set is None:
                return results
            return _reranked(db, model_id, query_set, results, n)
        k = min(live, k * _OVERFETCH)
    return []


def similar(
    db: sqlite_utils.Database,
    index: SimilarityIndex,
    seed_ids: Sequence[int],
    n: int = 20,
    *,
    exclude_seeds: bool = True,
    max_per_artist: int | None = None,
    max_per_album: int | None = None,
    exclude_same_album: bool = False,
    tag: str | None = None,
    model_id: str | None = None,
) -> list[Result]:
    """Tracks like the seeds, best first. Several seeds are blended by the mean of their unit
    vectors, re-normalised (the direction all seeds share), and their excerpt sets are pooled
    into one query set. Raises NotAnalyzedError for a seed without an embedding for this model."""
    seeds = [int(s) for s in seed_ids]
    if not seeds:
        raise ValueError("similar() needs at least one seed track")
    model_id = model_id or index.model_id
    vectors = embeddings.get(db, model_id, seeds)
    q = vectors[0] if len(seeds) == 1 else vectors.mean(axis=0)
    if not np.linalg.norm(q) > 1e-6:
        raise ValueError("the seed tracks cancel each other out; choose other seeds")
    seed_sets = excerpt_sets.get_present(db, model_id, seeds)
    query_set = None
    if all(s in seed_sets for s in seeds):
        query_set = np.concatenate([seed_sets[s] for s in seeds])
    albums: set[tuple[str, str]] = set()
    if exclude_same_album:
        albums = {k for m in _metadata(db, seeds).values() if (k := m.album_key()) is not None}
    return similar_to_vector(
        db,
        index,
        q,
        n,
        exclude_ids=set(seeds) if exclude_seeds else (),
        exclude_albums=albums,
        max_per_artist=max_per_artist,
        max_per_album=max_per_album,
        tag=tag,
        model_id=model_id,
        query_set=query_set,
    )


DURATION_TOLERANCE = (1.5, 0.01)  # seconds, share of the longer: encoder padding, trimmed silence


def _durations(db: sqlite_utils.Database, ids: Collection[int]) -> dict[int, float | None]:
    found: dict[int, float | None] = {}
    ids = sorted(ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT id, duration FROM tracks WHERE id IN ({marks})"  # noqa: S608 - placeholders
        found.update(db.execute(sql, chunk).fetchall())
    return found


def _same_length(a: float | None, b: float | None) -> bool:
    """Unknown durations don't veto a pair: the embedding decides alone then."""
    if not a or not b:
        return True
    seconds, share = DURATION_TOLERANCE
    return abs(a - b) <= max(seconds, share * max(a, b))


def duplicates(
    db: sqlite_utils.Database,
    index: SimilarityIndex,
    model_id: str | None = None,
    threshold: float = DUPLICATE_THRESHOLD,
    *,
    k: int = 8,
    batch: int = 4096,
) -> list[list[int]]:
    """Groups (sorted track ids, groups sorted by first id) of near-identical recordings among
    present tracks: each track's k nearest neighbours at cosine >= threshold are joined with
    union-find. Groups are transitive closures, so a chain a~b~c is one group even if a and c
    are slightly below the threshold; at 0.98 such chains are the same recording anyway.

    The same recording also has the same length, so a pair must agree in duration within
    `DURATION_TOLERANCE` (seconds or share, the larger): embeddings alone cannot tell two
    different songs apart when a model (e.g. the random-init baseline) maps everything close."""
    model_id = model_id or index.model_id
    k = min(k + 1, index.count)  # +1: a track is its own nearest neighbour
    if k < 2:
        return []
    edges: list[tuple[int, int]] = []
    for ids, matrix in embeddings.iter_all(db, model_id, batch=batch):
        labels, scores = index.query(matrix, k)
        rows, cols = np.nonzero((scores >= threshold) & (labels != ids[:, None]) & (labels >= 0))
        edges.extend(zip(ids[rows].tolist(), labels[rows, cols].tolist(), strict=True))
    # Only tracks still in the library and present on disk can be reported.
    meta = _metadata(db, sorted({t for edge in edges for t in edge}))
    present = {t for t, m in meta.items() if not m.missing}
    durations = _durations(db, present)
    edges = [(a, b) for a, b in edges if _same_length(durations.get(a), durations.get(b))]

    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    nodes: set[int] = set()
    for a, b in edges:
        if a in present and b in present:
            nodes.update((a, b))
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for x in nodes:
        groups.setdefault(find(x), []).append(x)
    return sorted(sorted(g) for g in groups.values())
