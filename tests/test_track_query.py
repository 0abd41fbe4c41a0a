"""The filter language turns user text into parameterised SQL and rejects what it can't parse."""

from __future__ import annotations

import pytest
from musicssl.engine import db as dbmod
from musicssl.engine.track_query import QueryError, parse_filters


@pytest.fixture
def rows(db):
    with dbmod.transaction(db) as conn:
        for i, (artist, year, title) in enumerate(
            [("Bach", 1720, "Air"), ("bach", 1985, "Night Air"), ("Miles", 1959, "So What")], 1
        ):
            conn.execute(
                "INSERT INTO tracks (id, path, artist, year, title, status, added_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'new', 0, 0)",
                [i, f"/m/{i}.mp3", artist, year, title],
            )
        conn.execute(
            "INSERT INTO tags (track_id, tag, source, score) VALUES (3, 'Jazz', 'file', 1)"
        )
        conn.execute(
            "INSERT INTO tags (track_id, tag, source, score) VALUES (1, 'jazz', 'user', 0)"
        )
    return db


def ids(db, filters=(), search=None, **kw):
    sql, params = parse_filters(list(filters), search).sql("id", **kw)
    return [r[0] for r in db.execute(sql, params).fetchall()]


def test_equality_is_case_insensitive_and_numbers_compare(rows):
    assert ids(rows, ["artist=BACH"]) == [1, 2]
    assert ids(rows, ["year>1900"], order_by="year") == [3, 2]
    assert ids(rows, ["artist=bach", "year<1800"]) == [1]


def test_tags_ignore_negative_user_labels(rows):
    # Track 1 carries 'jazz' only as a user's explicit "no" (score 0): it must not match.
    assert ids(rows, ["tag=jazz"]) == [3]
    assert ids(rows, ["tag!=jazz"], order_by="id") == [1, 2]


def test_search_spans_fields_and_tags(rows):
    assert ids(rows, search="air", order_by="id") == [1, 2]
    assert ids(rows, search="jazz") == [3]
    assert ids(rows, ["title~night"]) == [2]


def test_injection_attempts_are_data_not_sql(rows):
    assert ids(rows, ["artist=x' OR 1=1 --"]) == []
    with pytest.raises(QueryError, match="expected FIELD OP VALUE"):
        parse_filters(["1=1; DROP TABLE tracks"])
    with pytest.raises(QueryError, match="unknown field 'rowid'"):
        parse_filters(["rowid=1"])
    with pytest.raises(QueryError, match="cannot sort"):
        parse_filters([]).sql(order_by="id; DROP TABLE tracks")
    assert rows.execute("SELECT count(*) FROM tracks").fetchone()[0] == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [("year>abc", "is a number"), ("artist>b", "is text"), ("nonsense", "expected FIELD OP VALUE")],
)
def test_bad_filters_explain_themselves(text, message):
    with pytest.raises(QueryError, match=message):
        parse_filters([text])


def test_a_page_of_present_tracks_walks_the_sort_index(db):
    """The library's first page must not sort every track (see TrackQuery._page_where)."""
    with dbmod.transaction(db) as conn:
        conn.executemany(
            "INSERT INTO tracks (id, path, title, missing, status, added_at, updated_at) "
            "VALUES (?, ?, ?, ?, 'new', 0, 0)",
            [(i, f"/m/{i}.mp3", f"t{(i * 37) % 101:03d}", int(i % 7 == 0)) for i in range(1, 301)],
        )

    def plan(sql, params):
        return " | ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, params))

    present = parse_filters(["missing=0"])
    for descending in (False, True):
        sql, params = present.sql("id", "title", descending, 10, 5)
        assert "idx_tracks_title" in plan(sql, params), plan(sql, params)
        page = [r[0] for r in db.execute(sql, params)]
        assert page == ids(db, ["missing=0"], order_by="title", descending=descending)[5:15]
    # A selective filter keeps the scan-and-sort plan (and the same rows).
    sql, params = parse_filters(["missing=0"], "t01").sql("id", "title", False, 10, 0)
    assert "+missing" not in sql
    assert [r[0] for r in db.execute(sql, params)] == ids(
        db, ["missing=0"], "t01", order_by="title"
    )[:10]
