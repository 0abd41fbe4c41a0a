"""Excerpt sets: the bounded builder, set matching, and their rows in a real library DB."""

from __future__ import annotations

import numpy as np
import pytest
from musicssl.engine import excerpt_sets
from musicssl.engine.db import now, transaction
from musicssl.engine.excerpt_sets import (
    SetBuilder,
    blend,
    blended_matrix,
    set_similarities,
)


def set_similarity(a, b):
    return float(set_similarities(a, [b])[0])


def unit(*rows):
    m = np.asarray(rows, np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_builder_keeps_every_excerpt_up_to_its_cap():
    b = SetBuilder(cap=8)
    for k in range(8):
        b.add(np.array([k, 1.0]))
    np.testing.assert_array_equal(b.means()[:, 0], np.arange(8))


def test_builder_merges_neighbours_in_pairs_beyond_its_cap():
    b = SetBuilder(cap=4)
    for k in range(11):  # groups of 1 -> 2 -> 4 excerpts as the "file" goes on
        b.add(np.array([float(k)]))
        assert len(b) <= 4
    # 0..7 became two groups of four, 8..10 a third (still filling up).
    np.testing.assert_allclose(b.means()[:, 0], [1.5, 5.5, 9.0])
    with pytest.raises(ValueError, match="even"):
        SetBuilder(cap=3)


def test_set_matching_rewards_a_shared_section_that_the_mean_blurs():
    """The query has two sections (e0, e1). X repeats the first section exactly and has a
    variant of the second; Y sits between the sections. By the mean vectors Y is the query's
    exact match, by their excerpts X is: the blend ranks X first."""
    query = unit([1, 0, 0], [0, 1, 0])
    x = unit([1, 0, 0], [0, 0.9, 0.44])
    y = unit([1, 1, 0], [1, 1, 0])
    means = unit(query.mean(0), x.mean(0), y.mean(0))
    assert means[0] @ means[2] == pytest.approx(1.0)
    assert means[0] @ means[1] < means[0] @ means[2]
    assert set_similarity(query, x) > set_similarity(query, y)
    assert set_similarity(query, x) == pytest.approx(set_similarity(x, query))
    assert set_similarity(query, query) == pytest.approx(1.0)
    many = set_similarities(query, [x, y, x[:1], query])  # one product for all, sizes differ
    by_hand = [
        0.5 * (m.max(1).mean() + m.max(0).mean())
        for m in (query @ s.T for s in [x, y, x[:1], query])
    ]
    np.testing.assert_allclose(many, by_hand, rtol=1e-6)
    scores = blended_matrix(means[:1], [query], means[1:], [x, y])
    assert scores.shape == (1, 2) and scores[0, 0] > scores[0, 1]
    assert scores[0, 1] == pytest.approx(blend(1.0, set_similarity(query, y)))


def test_only_the_nearest_pool_is_re_ranked():
    """As in "find similar": outside a query's `pool` nearest by cosine, the cosine order
    continues after the re-ranked ones, however well the sets would match."""
    query = unit([1, 0, 0], [0, 1, 0])
    near, far = unit([1, 0.2, 0], [1, 0.2, 0]), query.copy()
    cands = unit(query.mean(0) + [0, 0, 0.1], query.mean(0) + [0, 0, 0.5])  # far is farther
    full = blended_matrix(unit(query.mean(0)), [query], cands, [near, far], pool=2)
    assert full[0].argmax() == 1  # its sets match exactly
    pooled = blended_matrix(unit(query.mean(0)), [query], cands, [near, far], pool=1)
    assert pooled[0].argmax() == 0
    assert blended_matrix(np.zeros((0, 3)), [], cands, [near, far]).shape == (0, 2)


def test_sets_round_trip_through_the_library_db_and_go_with_their_track(db):
    with transaction(db) as conn:
        for tid in (1, 2):
            conn.execute(
                "INSERT INTO tracks (id, path, added_at, updated_at) VALUES (?, ?, ?, ?)",
                (tid, f"/m/{tid}.flac", now(), now()),
            )
        stored = unit([1, 2, 3], [3, 2, 1])
        assert excerpt_sets.put(conn, "m", [(1, stored)]) == 1
    got = excerpt_sets.get_present(db, "m", [1, 2])
    assert list(got) == [1] and got[1].dtype == np.float32
    assert got[1].shape == stored.shape  # int8 storage, re-normalised on the way out
    np.testing.assert_allclose(np.sum(got[1] * stored, axis=1), 1.0, atol=1e-4)
    assert excerpt_sets.get_present(db, "other-model", [1]) == {}
    with pytest.raises(ValueError, match="not finite"):
        excerpt_sets.put(db, "m", [(2, np.full((2, 3), np.nan))])
    with pytest.raises(ValueError, match="zero vector"):
        excerpt_sets.put(db, "m", [(2, np.zeros((1, 3)))])
    excerpt_sets.put(db, "m", [(2, unit([1, 0]))])  # another dimension: a damaged library
    with pytest.raises(ValueError, match="mix dimensions"):
        excerpt_sets.get_present(db, "m", [1, 2])
    with transaction(db) as conn:
        conn.execute("DELETE FROM tracks WHERE id = 1")
    assert excerpt_sets.get_present(db, "m", [1]) == {}
