"""similar() and duplicates() on a small library whose geometry is laid out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from musicssl.engine import embeddings as emb
from musicssl.engine import similar as sim
from musicssl.engine.db import now, transaction
from musicssl.engine.index import SimilarityIndex, open_index
from musicssl.engine.similar import NotAnalyzedError, duplicates, similar, similar_to_vector

MODEL = "m1"
D = 16


def axis(i):
    v = np.zeros(D, dtype=np.float32)
    v[i] = 1.0
    return v


def toward(base, other, t):
    """A unit vector at angle-ish t from `base` toward `other`: larger t = less similar."""
    v = base + t * other
    return v / np.linalg.norm(v)


def add_track(conn, tid, vector=None, *, artist="A", album="X", album_artist=None, missing=0):
    conn.execute(
        "INSERT INTO tracks (id, path, title, artist, album, album_artist, missing, added_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (tid, f"/m/{tid}.flac", f"t{tid}", artist, album, album_artist, missing, now(), now()),
    )
    if vector is not None:
        emb.put(conn, MODEL, [(tid, vector)])


@pytest.fixture
def lib(db):
    """Track 1 is the seed (axis 0). Tracks 2..21 fan out from it: track i is less similar than
    track i-1. Artists and albums rotate so caps have something to bite on."""
    with transaction(db) as conn:
        add_track(conn, 1, axis(0), artist="A", album="X")
        for i in range(2, 22):
            add_track(
                conn,
                i,
                toward(axis(0), axis(1 + i % 3), 0.05 * i),
                artist="ABC"[i % 3],
                album=f"album{i % 6}",  # each album has one artist,
            )
    return db, open_index(db, MODEL)


def ids(results):
    return [r.track_id for r in results]


def test_nearest_first_and_seed_excluded(lib):
    db, index = lib
    res = similar(db, index, [1], n=5)
    assert ids(res) == [2, 3, 4, 5, 6]
    assert all(a.score >= b.score for a, b in zip(res, res[1:], strict=False))
    r = res[0]
    assert (r.path, r.title, r.artist, r.album) == ("/m/2.flac", "t2", "C", "album2")

    with_seed = similar(db, index, [1], n=3, exclude_seeds=False)
    assert ids(with_seed) == [1, 2, 3] and with_seed[0].score == pytest.approx(1.0, abs=1e-5)


def test_multi_seed_uses_the_mean_direction(db):
    with transaction(db) as conn:
        add_track(conn, 1, axis(0))
        add_track(conn, 2, axis(1))
        add_track(conn, 3, toward(axis(0), axis(1), 1.0))  # halfway between the seeds
        add_track(conn, 4, toward(axis(0), axis(2), 0.3))  # close to seed 1 only
        add_track(conn, 5, toward(axis(1), axis(2), 0.3))  # close to seed 2 only
    index = open_index(db, MODEL)
    assert ids(similar(db, index, [1], n=1)) == [4]
    res = similar(db, index, [1, 2], n=3)
    assert ids(res)[0] == 3 and res[0].score == pytest.approx(1.0, abs=1e-5)
    assert set(ids(res)) == {3, 4, 5}


def test_max_per_artist_and_album(lib):
    db, index = lib
    res = similar(db, index, [1], n=3, max_per_artist=1)
    assert len({r.artist for r in res}) == 3 and len(res) == 3
    assert ids(res) == [2, 3, 4]
    res = similar(db, index, [1], n=6, max_per_artist=2)
    assert len(res) == 6 and max(ids(res).count(i) for i in ids(res)) == 1
    for artist in "ABC":
        assert sum(r.artist == artist for r in res) <= 2
    # Only 6 albums exist: with one per album we get 6 results, not n, and no error.
    res = similar(db, index, [1], n=10, max_per_album=1)
    assert ids(res) == [2, 3, 4, 5, 6, 7]
    res = similar(db, index, [1], n=10, max_per_album=2)
    assert len(res) == 10 and all(ids(res).count(i) == 1 for i in ids(res))


def test_artist_cap_counts_album_artist_but_not_various_artists(db):
    with transaction(db) as conn:
        add_track(conn, 1, axis(0))
        add_track(conn, 2, toward(axis(0), axis(1), 0.1), artist="P", album_artist="Band")
        add_track(conn, 3, toward(axis(0), axis(1), 0.2), artist="Q", album_artist="Band")
        add_track(
            conn, 4, toward(axis(0), axis(1), 0.3), artist="R", album_artist="Various Artists"
        )
        add_track(
            conn, 5, toward(axis(0), axis(1), 0.4), artist="S", album_artist="Various Artists"
        )
    index = open_index(db, MODEL)
    assert ids(similar(db, index, [1], n=10, max_per_artist=1)) == [2, 4, 5]


def test_exclude_same_album_keys_album_with_its_artist(db):
    with transaction(db) as conn:
        add_track(conn, 1, axis(0), artist="A", album="Greatest Hits")
        add_track(conn, 2, toward(axis(0), axis(1), 0.1), artist="A", album="greatest hits ")
        add_track(conn, 3, toward(axis(0), axis(1), 0.2), artist="B", album="Greatest Hits")
        add_track(conn, 4, toward(axis(0), axis(1), 0.3), artist="A", album="Other")
    index = open_index(db, MODEL)
    assert ids(similar(db, index, [1], n=10)) == [2, 3, 4]
    assert ids(similar(db, index, [1], n=10, exclude_same_album=True)) == [3, 4]


@pytest.mark.parametrize("exact_limit", [sim.EXACT_TAG_LIMIT, 0])
def test_tag_filter(lib, monkeypatch, exact_limit):
    """Both paths: exact ranking of a small tagged set, and over-fetching from the index."""
    monkeypatch.setattr(sim, "EXACT_TAG_LIMIT", exact_limit)
    db, index = lib
    with transaction(db) as conn:
        conn.executemany(
            "INSERT INTO tags (track_id, tag, source, score) VALUES (?, ?, ?, ?)",
            [
                (20, "Rock", "file", 1.0),
                (15, "rock", "auto", 0.7),
                (3, "rock", "auto", 0.3),  # below 0.5: not tagged
                (4, "rock", "auto", 0.9),
                (4, "rock", "user", 0.0),  # the user said no: overrides the model
                (5, "jazz", "user", 1.0),
                (1, "rock", "user", 1.0),  # the seed itself stays excluded
            ],
        )
    res = similar(db, index, [1], n=5, tag="rock")
    assert ids(res) == [15, 20]
    assert similar(db, index, [1], n=5, tag="polka") == []


def test_missing_tracks_are_hidden_until_they_return(lib):
    db, index = lib
    with transaction(db) as conn:
        conn.executemany("UPDATE tracks SET missing = 1 WHERE id = ?", [(i,) for i in range(2, 19)])
    # 17 of the 20 nearest are gone: the over-fetch has to grow to find 3 survivors.
    assert ids(similar(db, index, [1], n=3)) == [19, 20, 21]
    with transaction(db) as conn:
        conn.execute("UPDATE tracks SET missing = 0 WHERE id = 2")
    assert ids(similar(db, index, [1], n=2)) == [2, 19]


def test_overfetch_grows_until_the_index_is_exhausted(lib):
    db, index = lib
    res = similar(db, index, [1], n=5, max_per_artist=1)
    assert len(res) == 3  # only three artists exist; no endless loop, no error


def test_seed_without_embedding_is_a_clear_error(lib):
    db, index = lib
    with transaction(db) as conn:
        add_track(conn, 99, None)
    with pytest.raises(NotAnalyzedError, match="track 99 has not been analysed") as info:
        similar(db, index, [1, 99])
    assert info.value.track_id == 99
    with pytest.raises(ValueError):
        similar(db, index, [])


def test_similar_to_vector_for_audio_outside_the_library(lib):
    db, index = lib
    q = toward(axis(0), axis(1 + 7 % 3), 0.35)  # where track 7 sits
    res = similar_to_vector(db, index, q, n=2)
    assert ids(res)[0] == 7


def test_tracks_deleted_from_the_library_are_skipped(lib):
    db, index = lib
    with transaction(db) as conn:
        conn.execute("DELETE FROM tracks WHERE id = 2")  # the index still has label 2
    assert ids(similar(db, index, [1], n=2)) == [3, 4]


def test_duplicates_finds_the_planted_pair_only(db):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 64)).astype(np.float32)
    # Realistic neighbours: many pairs at high but not duplicate similarity (~0.9).
    x[100:200] = x[:100] + 0.35 * rng.standard_normal((100, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    copy = x[42] + 0.01 * rng.standard_normal(64).astype(np.float32)  # same audio, re-encoded
    with transaction(db) as conn:
        for i, v in enumerate(x, start=1):
            add_track(conn, i, v)
        add_track(conn, 301, copy)
        add_track(conn, 302, x[7] + 0.01 * rng.standard_normal(64), missing=1)
    index = open_index(db, MODEL)
    sims = x @ x.T - 2 * np.eye(300)
    assert sims.max() < sim.DUPLICATE_THRESHOLD  # the near neighbours are not duplicates
    assert sims.max() > 0.85
    assert duplicates(db, index) == [[43, 301]]
    # A third copy joins the same group.
    with transaction(db) as conn:
        add_track(conn, 303, x[42] + 0.01 * rng.standard_normal(64))
    index.add([303], emb.get(db, MODEL, [303]))
    assert duplicates(db, index) == [[43, 301, 303]]


def test_duplicates_on_tiny_or_empty_index(db):
    index = SimilarityIndex(MODEL)
    assert duplicates(db, index) == []


def test_duplicates_need_matching_durations(db):
    """Near-identical vectors of tracks of very different length are not one recording."""
    v = axis(3)
    with transaction(db) as conn:
        for tid, duration in [(1, 200.0), (2, 200.9), (3, 320.0)]:
            add_track(conn, tid, v)
            conn.execute("UPDATE tracks SET duration = ? WHERE id = ?", [duration, tid])
    index = open_index(db, MODEL)
    assert duplicates(db, index) == [[1, 2]]


def test_library_index_is_rechecked_only_after_a_commit(lib, tmp_path):
    """The checksum is skipped while the DB is unchanged, yet another connection's analysis
    (another process) and this connection's own writes are both picked up."""
    from musicssl.engine.library import Library

    db, _ = lib
    with transaction(db) as conn:
        emb.publish_index_model(conn, MODEL, True)
    library = Library(tmp_path / "library.db")
    try:
        first = library.index()
        statements: list[str] = []
        library.db.conn.set_trace_callback(statements.append)
        assert library.index() is first
        library.db.conn.set_trace_callback(None)
        assert statements == ["PRAGMA data_version"]  # no checksum scan
        with transaction(db) as conn:  # another connection adds a near-twin of the seed
            add_track(conn, 22, toward(axis(0), axis(1), 0.01))
        assert ids(library.similar([1], n=1)) == [22]
        with transaction(library.db) as conn:  # this connection's own write
            add_track(conn, 23, toward(axis(0), axis(1), 0.001))
        assert ids(library.similar([1], n=1)) == [23]
    finally:
        library.close()


def test_excerpt_sets_rerank_the_nearest_candidates(db):
    """Candidate 2 is nearer by track vector; candidate 3 shares one of the seed's sections
    exactly. With sets stored the blend puts 3 first; while a candidate lacks its set (not
    re-analysed yet) the index's cosine order stays, as it does without the seed's set."""
    from musicssl.engine import excerpt_sets

    seed_set = np.stack([axis(0), axis(1)])
    near_set = np.stack([toward(axis(0), axis(1), 1.0)] * 2)  # between the seed's sections
    shared_set = np.stack([axis(0), toward(axis(1), axis(2), 0.5)])
    middle = toward(axis(0), axis(1), 1.0)
    with transaction(db) as conn:
        add_track(conn, 1, middle)
        add_track(conn, 2, toward(middle, axis(3), 0.1))
        add_track(conn, 3, toward(middle, axis(3), 0.3))
    index = open_index(db, MODEL)
    with transaction(db) as conn:
        excerpt_sets.put(conn, MODEL, [(2, near_set), (3, shared_set)])
    assert ids(similar(db, index, [1], n=2)) == [2, 3]  # the seed has no set
    with transaction(db) as conn:
        excerpt_sets.put(conn, MODEL, [(1, seed_set)])
    res = similar(db, index, [1], n=2)
    assert ids(res) == [3, 2]
    cos = float(emb.get(db, MODEL, [1])[0] @ emb.get(db, MODEL, [3])[0])
    expected = excerpt_sets.blend(cos, excerpt_sets.set_similarities(seed_set, [shared_set])[0])
    assert res[0].score == pytest.approx(expected, abs=1e-3)
    with transaction(db) as conn:
        add_track(conn, 4, toward(middle, axis(3), 0.2))  # no set yet
    index = open_index(db, MODEL)
    res = similar(db, index, [1], n=3)
    assert ids(res) == [2, 4, 3] and res[1].score == pytest.approx(
        float(emb.get(db, MODEL, [1])[0] @ emb.get(db, MODEL, [4])[0]), abs=1e-5
    )
