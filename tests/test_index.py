"""The hnswlib index: accuracy, k clamping, chunked persistence, self-healing, thread safety."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from musicssl.engine import embeddings as emb
from musicssl.engine import index as ixmod
from musicssl.engine.db import now, transaction
from musicssl.engine.index import IndexLoadError, SimilarityIndex, open_index

MODEL = "m1"


def unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fill(db, vectors, start=1, model=MODEL):
    ids = list(range(start, start + len(vectors)))
    with transaction(db) as conn:
        conn.executemany(
            "INSERT OR IGNORE INTO tracks (id, path, added_at, updated_at) VALUES (?, ?, ?, ?)",
            [(i, f"/music/{i}.flac", now(), now()) for i in ids],
        )
        emb.put(conn, model, zip(ids, vectors, strict=True))
    return np.asarray(ids)


def stored_chunks(db, model=MODEL):
    return db.conn.execute(
        "SELECT count(*) FROM index_chunks WHERE model_id = ?", (model,)
    ).fetchone()[0]


@pytest.fixture
def rng():
    return np.random.default_rng(3)


def test_recall_at_10_against_exact_search(rng):
    x = unit(rng, 5000, 64)
    index = SimilarityIndex(MODEL, 64, max_elements=5000)
    index.add(np.arange(5000), x)
    queries = unit(rng, 200, 64)
    ids, scores = index.query(queries, 10)
    exact = np.argsort(-(queries @ x.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact, strict=True)])
    assert recall >= 0.99, recall
    # Scores are cosines (inner products of unit vectors), best first.
    np.testing.assert_allclose(scores[:, 0], np.sum(queries * x[ids[:, 0]], axis=1), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_k_is_clamped_to_live_items(rng):
    index = SimilarityIndex(MODEL, 8)
    x = unit(rng, 3, 8)
    index.add([10, 20, 30], x)
    ids, scores = index.query(x[0], 10)
    assert ids.tolist()[0] == 10 and sorted(ids.tolist()) == [10, 20, 30]
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    index.remove([10])
    assert sorted(index.query(x[0], 10)[0].tolist()) == [20, 30]
    assert index.query(x, 10)[0].shape == (3, 2)


def test_empty_index_queries_return_nothing():
    index = SimilarityIndex(MODEL)
    ids, scores = index.query(np.ones(4, dtype=np.float32), 5)
    assert ids.shape == (0,) and scores.shape == (0,) and len(index) == 0


def test_remove_hides_and_add_brings_back(rng):
    x = unit(rng, 50, 16)
    index = SimilarityIndex(MODEL, 16)
    index.add(np.arange(1, 51), x)
    assert index.remove([5, 6, 999]) == 2  # unknown ids are ignored
    assert index.remove([5]) == 0
    assert len(index) == 48
    ids, _ = index.query(x, 10)
    assert 5 not in ids and 6 not in ids
    index.add([5], x[4:5])
    assert index.query(x[4], 1)[0].tolist() == [5] and len(index) == 49


def test_add_updates_an_existing_label(rng):
    x = unit(rng, 20, 16)
    index = SimilarityIndex(MODEL, 16)
    index.add(np.arange(20), x)
    index.add([3], x[7:8])  # track 3 re-analysed, now sounds like track 7
    ids, scores = index.query(x[7], 2)
    assert set(ids.tolist()) == {3, 7} and np.all(scores > 0.999)
    assert len(index) == 20


def test_resize_beyond_initial_capacity_grows_geometrically(rng):
    index = SimilarityIndex(MODEL, 8, max_elements=10)
    first = index.capacity
    x = unit(rng, first + 500, 8)
    index.add(np.arange(first), x[:first])
    assert index.capacity == first
    for start in range(first, first + 500, 100):  # several small adds: one geometric step
        index.add(np.arange(start, start + 100), x[start : start + 100])
    assert len(index) == first + 500
    assert index.capacity >= int(first * 1.5)
    assert index.query(x[-1], 1)[0].tolist() == [first + 499]


def test_rejects_wrong_dimension(rng):
    index = SimilarityIndex(MODEL, 8)
    index.add([1], unit(rng, 1, 8))
    with pytest.raises(ValueError, match="dimensions"):
        index.add([2], unit(rng, 1, 9))
    with pytest.raises(ValueError, match="dimensions"):
        index.query(np.ones(9, dtype=np.float32), 1)


def test_build_from_table_matches_incremental_adds(db, rng):
    x = unit(rng, 300, 16)
    ids = fill(db, x)
    built = SimilarityIndex.build(db, MODEL, batch=64)
    assert len(built) == 300 and built.dim == 16
    got, _ = built.query(x[:20], 5)
    np.testing.assert_array_equal(got[:, 0], ids[:20])


def test_save_load_round_trip_gives_identical_results(db, rng):
    x = unit(rng, 2000, 32)
    fill(db, x)
    index = SimilarityIndex.build(db, MODEL)
    index.remove([7])
    queries = unit(rng, 50, 32)
    before = index.query(queries, 10)
    index.save(db)
    assert stored_chunks(db) == 1

    loaded = SimilarityIndex.load(db, MODEL)
    after = loaded.query(queries, 10)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert loaded.deleted == {7} and len(loaded) == 1999
    state = ixmod.read_state(db, MODEL)
    assert state.count == 1999 and state.checksum == emb.checksum(db, MODEL)
    assert state.params["dim"] == 32 and state.params["M"] == ixmod.DEFAULT_M
    # The loaded index keeps working: adds beyond its loaded capacity, queries.
    more = unit(rng, 3000, 32)
    loaded.add(np.arange(10_000, 13_000), more)
    assert loaded.query(more[-1], 1)[0].tolist() == [12_999]


def test_save_in_many_small_chunks(db, rng):
    x = unit(rng, 500, 16)
    fill(db, x)
    index = SimilarityIndex.build(db, MODEL)
    index.save(db, chunk_size=4096)
    n_chunks = stored_chunks(db)
    total = db.conn.execute("SELECT total(length(data)) FROM index_chunks").fetchone()[0]
    assert n_chunks == -(-int(total) // 4096) and n_chunks > 5
    loaded = SimilarityIndex.load(db, MODEL)
    np.testing.assert_array_equal(index.query(x, 5)[0], loaded.query(x, 5)[0])
    # Saving again replaces every chunk rather than leaving old tail chunks behind.
    index.save(db, chunk_size=1 << 20)
    assert stored_chunks(db) == 1
    SimilarityIndex.load(db, MODEL)


def test_open_index_loads_a_current_saved_index(db, rng, monkeypatch):
    fill(db, unit(rng, 200, 16))
    first = open_index(db, MODEL)
    assert ixmod.read_state(db, MODEL) is not None

    def no_build(*args, **kwargs):
        raise AssertionError("a current saved index must be loaded, not rebuilt")

    monkeypatch.setattr(SimilarityIndex, "build", no_build)
    again = open_index(db, MODEL, ef=64)
    assert again.ef == 64 and len(again) == len(first) == 200


def test_open_index_rebuilds_a_stale_index(db, rng):
    x = unit(rng, 200, 16)
    fill(db, x)
    open_index(db, MODEL)
    # A track analysed after the save (the app crashed before saving the index again).
    new = unit(rng, 1, 16)
    fill(db, new, start=500)
    index = open_index(db, MODEL)
    assert len(index) == 201
    assert index.query(new[0], 1)[0].tolist() == [500]
    assert ixmod.read_state(db, MODEL).checksum == emb.checksum(db, MODEL)


def test_open_index_rebuilds_after_a_reanalysis(db, rng):
    x = unit(rng, 100, 16)
    fill(db, x)
    open_index(db, MODEL)
    with transaction(db) as conn:  # same count, same ids, new vector for track 1
        emb.put(conn, MODEL, [(1, x[50])])
    index = open_index(db, MODEL)
    assert set(index.query(x[50], 2)[0].tolist()) == {1, 51}


@pytest.mark.parametrize("damage", ["flip", "truncate", "params", "drop_chunk"])
def test_corrupt_saved_index_is_rebuilt_not_crashed(db, rng, damage):
    x = unit(rng, 400, 16)
    fill(db, x)
    open_index(db, MODEL).save(db, chunk_size=8192)
    with transaction(db) as conn:
        if damage == "flip":
            data = bytearray(
                conn.execute("SELECT data FROM index_chunks WHERE seq = 0").fetchone()[0]
            )
            data[:64] = bytes(64)  # wipe the header hnswlib trusts
            conn.execute("UPDATE index_chunks SET data = ? WHERE seq = 0", (bytes(data),))
        elif damage == "truncate":
            conn.execute("UPDATE index_chunks SET data = substr(data, 1, 100) WHERE seq = 1")
        elif damage == "params":
            conn.execute("UPDATE index_state SET params = '{not json'")
        else:
            conn.execute("DELETE FROM index_chunks WHERE seq = (SELECT max(seq) FROM index_chunks)")
    with pytest.raises(IndexLoadError):
        SimilarityIndex.load(db, MODEL)
    index = open_index(db, MODEL)
    assert len(index) == 400
    assert index.query(x[9], 1)[0].tolist() == [10]
    SimilarityIndex.load(db, MODEL)  # and the rebuilt one was saved


def test_open_index_with_no_embeddings_then_grow(db, rng):
    index = open_index(db, MODEL)
    assert len(index) == 0 and index.dim is None
    assert SimilarityIndex.load(db, MODEL).dim is None
    x = unit(rng, 10, 8)
    ids = fill(db, x)
    index.add(ids, x)
    index.save(db)
    reopened = open_index(db, MODEL)
    assert reopened.query(x[3], 1)[0].tolist() == [4]


def test_changed_build_parameters_rebuild(db, rng):
    fill(db, unit(rng, 50, 8))
    open_index(db, MODEL)
    index = open_index(db, MODEL, M=8)
    assert index.M == 8
    assert json.loads(db.conn.execute("SELECT params FROM index_state").fetchone()[0])["M"] == 8


def test_query_survives_hnswlib_refusing_k(rng):
    """hnswlib raises when it cannot fill k; the index searches wider, then pads."""
    index = SimilarityIndex(MODEL, 8)
    x = unit(rng, 20, 8)
    index.add(np.arange(20), x)

    class Refusing:
        def __init__(self, inner, refuse_above):
            self.inner, self.refuse_above = inner, refuse_above

        def knn_query(self, v, k, num_threads=-1):
            if k > self.refuse_above:
                raise RuntimeError("Cannot return the results in a contiguous 2D array")
            return self.inner.knn_query(v, k=k, num_threads=num_threads)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    index._index = Refusing(index._index, refuse_above=3)
    ids, scores = index.query(x[:2], 5)
    assert ids.shape == (2, 5)
    assert ids[0, 0] == 0 and ids[1, 0] == 1
    assert np.all(ids[:, 2:] == -1) and np.all(np.isneginf(scores[:, 2:]))
    assert index.ef == ixmod.DEFAULT_EF  # the wider search was temporary


def test_concurrent_add_and_query(rng):
    """The GUI queries while analysis adds; hnswlib must never see both at once."""
    d = 32
    index = SimilarityIndex(MODEL, d, max_elements=100)
    x = unit(rng, 6100, d)
    index.add(np.arange(100), x[:100])
    errors: list[BaseException] = []
    done = threading.Event()

    def writer():
        try:
            for start in range(100, 6100, 250):
                index.add(np.arange(start, start + 250), x[start : start + 250])
                index.remove([start])
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            done.set()

    def reader():
        try:
            q = unit(np.random.default_rng(1), 8, d)
            while not done.is_set():
                ids, _ = index.query(q, 10)
                assert ids.shape == (8, 10)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(index) == 6100 - len(range(100, 6100, 250))


def test_chunk_copy_without_incremental_blob_io(db, rng):
    """Python 3.10 has no Connection.blobopen: the plain SELECT path must give the same bytes."""
    import io

    fill(db, unit(rng, 300, 16))
    SimilarityIndex.build(db, MODEL).save(db, chunk_size=5000)
    crcs = ixmod.read_state(db, MODEL).params["chunk_crc32"]

    class NoBlobOpen:
        def __init__(self, conn):
            self.conn = conn

        def execute(self, *args):
            return self.conn.execute(*args)

    fast, slow = io.BytesIO(), io.BytesIO()
    assert ixmod._copy_chunks(db.conn, MODEL, crcs, fast) == ixmod._copy_chunks(
        NoBlobOpen(db.conn), MODEL, crcs, slow
    )
    assert fast.getvalue() == slow.getvalue() and len(fast.getvalue()) > 5000
