"""Embeddings round-trip as raw float32 and the cheap checksum notices every change that matters."""

from __future__ import annotations

import numpy as np
import pytest
from musicssl.engine import embeddings as emb
from musicssl.engine.db import now, transaction

MODEL = "m1"


def add_tracks(db, ids):
    with transaction(db) as conn:
        conn.executemany(
            "INSERT INTO tracks (id, path, added_at, updated_at) VALUES (?, ?, ?, ?)",
            [(i, f"/music/{i}.flac", now(), now()) for i in ids],
        )


def put(db, model, items):
    with transaction(db) as conn:
        return emb.put(conn, model, items)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_round_trip_normalises_and_stores_little_endian_float32(db, rng):
    add_tracks(db, [1, 2, 3])
    vecs = rng.standard_normal((3, 8)).astype(np.float64) * 5
    assert put(db, MODEL, zip([3, 1, 2], vecs, strict=True)) == 3

    got = emb.get(db, MODEL, [1, 2, 3])
    assert got.dtype == np.float32 and got.shape == (3, 8)
    expected = vecs[[1, 2, 0]] / np.linalg.norm(vecs[[1, 2, 0]], axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-6)

    blob = db.conn.execute(
        "SELECT vector FROM embeddings WHERE model_id = ? AND track_id = 1", (MODEL,)
    ).fetchone()[0]
    assert len(blob) == 8 * 4
    np.testing.assert_array_equal(np.frombuffer(blob, dtype="<f4"), got[0])
    assert emb.dim(db, MODEL) == 8 and emb.count(db, MODEL) == 3


def test_get_names_the_track_without_embedding(db, rng):
    add_tracks(db, [1, 2])
    put(db, MODEL, [(1, rng.standard_normal(4))])
    with pytest.raises(emb.NotAnalyzedError, match="track 2 has not been analysed") as info:
        emb.get(db, MODEL, [1, 2])
    assert info.value.track_id == 2
    ids, matrix = emb.get_present(db, MODEL, [2, 1])
    assert ids.tolist() == [1] and matrix.shape == (1, 4)


def test_iter_all_batches_in_id_order_per_model(db, rng):
    add_tracks(db, range(1, 8))
    vecs = {i: rng.standard_normal(4) for i in range(1, 8)}
    put(db, MODEL, vecs.items())
    put(db, "other", [(1, rng.standard_normal(6))])

    batches = list(emb.iter_all(db, MODEL, batch=3))
    assert [len(ids) for ids, _ in batches] == [3, 3, 1]
    ids = np.concatenate([b[0] for b in batches])
    matrix = np.concatenate([b[1] for b in batches])
    assert ids.tolist() == list(range(1, 8))
    np.testing.assert_allclose(matrix, emb.get(db, MODEL, ids.tolist()))
    assert list(emb.iter_all(db, "nothing")) == []


def test_put_rejects_bad_vectors(db):
    add_tracks(db, [1, 2])
    put(db, MODEL, [(1, np.ones(4))])
    with pytest.raises(ValueError, match="5 dimensions"):
        put(db, MODEL, [(2, np.ones(5))])
    with pytest.raises(ValueError, match="non-zero"):
        put(db, MODEL, [(2, np.zeros(4))])
    with pytest.raises(ValueError, match="finite"):
        put(db, MODEL, [(2, np.array([1.0, np.nan, 0, 0]))])
    assert emb.count(db, MODEL) == 1  # the failed transactions left nothing behind


def test_delete(db, rng):
    add_tracks(db, [1, 2, 3])
    put(db, MODEL, [(i, rng.standard_normal(4)) for i in (1, 2, 3)])
    with transaction(db) as conn:
        assert emb.delete(conn, MODEL, [2, 99]) == 1
    assert emb.count(db, MODEL) == 2
    with pytest.raises(emb.NotAnalyzedError):
        emb.get(db, MODEL, [2])


def test_checksum_tracks_replace_add_delete_but_not_unrelated_writes(db, rng):
    add_tracks(db, [1, 2, 3, 4])
    put(db, MODEL, [(i, rng.standard_normal(4)) for i in (1, 2, 3)])
    base = emb.checksum(db, MODEL)

    # Unrelated writes: metadata, tags, another model's vectors, index state.
    with transaction(db) as conn:
        conn.execute("UPDATE tracks SET title = 'x', status = 'analyzed' WHERE id = 1")
        conn.execute(
            "INSERT INTO tags (track_id, tag, source, score) VALUES (1, 'rock', 'user', 1)"
        )
        emb.put(conn, "other", [(1, rng.standard_normal(4)), (4, rng.standard_normal(4))])
    assert emb.checksum(db, MODEL) == base

    # Re-analysis of a track in the middle and of the newest row: same count, same ids.
    put(db, MODEL, [(2, rng.standard_normal(4))])
    after_replace = emb.checksum(db, MODEL)
    assert after_replace != base
    put(db, MODEL, [(2, rng.standard_normal(4))])
    assert emb.checksum(db, MODEL) != after_replace
    previous = emb.checksum(db, MODEL)

    put(db, MODEL, [(4, rng.standard_normal(4))])
    added = emb.checksum(db, MODEL)
    assert added != previous
    with transaction(db) as conn:
        emb.delete(conn, MODEL, [4])
    assert emb.checksum(db, MODEL) != added
    # Deleting a track row cascades to its embedding, and the checksum sees it.
    with transaction(db) as conn:
        conn.execute("DELETE FROM tracks WHERE id = 1")
    assert emb.checksum(db, MODEL).startswith("2:")


def test_delete_forgets_saved_index_state(db, rng):
    """Delete + re-insert of the max-rowid row can reuse its rowid; the state must not survive."""
    add_tracks(db, [1, 2])
    put(db, MODEL, [(1, rng.standard_normal(4)), (2, rng.standard_normal(4))])
    with transaction(db) as conn:
        conn.execute(
            "INSERT INTO index_state (model_id, count, checksum, params, updated_at) "
            "VALUES (?, 2, ?, '{}', 0)",
            (MODEL, emb.checksum(conn, MODEL)),
        )
    before = emb.checksum(db, MODEL)
    with transaction(db) as conn:
        emb.delete(conn, MODEL, [2])
        emb.put(conn, MODEL, [(2, rng.standard_normal(4))])
    assert emb.checksum(db, MODEL) == before  # the blind spot the state deletion covers
    assert db.conn.execute("SELECT count(*) FROM index_state").fetchone()[0] == 0


def test_checksum_is_cheap(db, rng):
    """The staleness check must not read vectors: its plan is a covering-index search."""
    plan = db.conn.execute(
        "EXPLAIN QUERY PLAN SELECT count(*), total(track_id), total(rowid) FROM embeddings "
        "WHERE model_id = ?",
        (MODEL,),
    ).fetchall()
    assert "COVERING INDEX" in " ".join(str(row[-1]) for row in plan)
