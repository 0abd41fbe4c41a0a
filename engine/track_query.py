"""Track filters as a tiny safe language, shared by `musicssl tracks --where` and the GUI.

Users type `artist=Bach`, `year>1990`, `tag=rock`, `title~night`; we translate that into SQL with
bound parameters over a whitelist of columns, so no user text ever becomes SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import MusicSSLError

# Columns a filter may name, and whether they compare as numbers.
COLUMNS: dict[str, bool] = {
    "id": True,
    "path": False,
    "title": False,
    "artist": False,
    "album": False,
    "album_artist": False,
    "genre": False,
    "year": True,
    "track_number": True,
    "duration": True,
    "sample_rate": True,
    "channels": True,
    "codec": False,
    "status": False,
    "missing": True,
}
SORTABLE = tuple(COLUMNS) + ("added_at", "updated_at")
_CLAUSE = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|!=|=|~|>|<)\s*(.*?)\s*$")


class QueryError(MusicSSLError, ValueError):
    """A filter the user wrote cannot be understood; the message says which part and why."""


@dataclass
class TrackQuery:
    """WHERE text + parameters, combinable; `sql()` gives the full statement for a page of rows."""

    clauses: list[str] = field(default_factory=list)
    params: list[object] = field(default_factory=list)
    # Clauses true for (nearly) every track, with the same test written so SQLite will not use
    # an index for it (unary +): see `sql()`.
    unselective: dict[int, str] = field(default_factory=dict)

    def where(self) -> str:
        return " AND ".join(self.clauses) if self.clauses else "1"

    def _page_where(self) -> str:
        """WHERE for a LIMIT page: when every clause is unselective (the library table's
        `missing=0`), SQLite would otherwise pick the `missing` index and sort all 100,000 rows
        for a page of 200 (27-63 ms); without it, it walks the sort column's index and stops
        after the page (~1 ms). Selective filters keep the plan that scans and sorts, since
        walking an index in a random order over rows that rarely match is slower still."""
        if not self.clauses or len(self.unselective) < len(self.clauses):
            return self.where()
        return " AND ".join(self.unselective[i] for i in range(len(self.clauses)))

    def sql(
        self,
        columns: str = "*",
        order_by: str = "artist",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[str, list[object]]:
        if order_by not in SORTABLE:
            raise QueryError(f"cannot sort by {order_by!r}; choose one of {', '.join(SORTABLE)}")
        direction = "DESC" if descending else "ASC"
        text_sort = "" if COLUMNS.get(order_by, True) else " COLLATE NOCASE"
        where = self.where() if limit is None else self._page_where()
        sql = (
            f"SELECT {columns} FROM tracks WHERE {where} "  # noqa: S608 - whitelisted names
            f"ORDER BY {order_by}{text_sort} {direction}, id"
        )
        params = list(self.params)
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [limit, offset]
        return sql, params


def parse_filters(
    filters: list[str] | tuple[str, ...] = (), search: str | None = None
) -> TrackQuery:
    """Each filter is one `field OP value`; all must hold. `search` matches text fields or tags."""
    query = TrackQuery()
    for text in filters:
        match = _CLAUSE.match(text)
        if not match:
            raise QueryError(f"{text!r}: expected FIELD OP VALUE, e.g. artist=Bach or year>1990")
        name, op, value = match.groups()
        if name == "tag":
            _add_tag_clause(query, op, value)
        elif name in COLUMNS:
            _add_column_clause(query, name, op, value, numeric=COLUMNS[name])
        else:
            raise QueryError(f"{text!r}: unknown field {name!r}; known: tag, {', '.join(COLUMNS)}")
    if search:
        for word in search.split():
            like = f"%{word}%"
            query.clauses.append(
                "(title LIKE ? OR artist LIKE ? OR album LIKE ? OR album_artist LIKE ? "
                "OR path LIKE ? "
                "OR id IN (SELECT track_id FROM tags WHERE tag LIKE ? AND score >= 0.5))"
            )
            query.params += [like] * 6
    return query


def _add_tag_clause(query: TrackQuery, op: str, value: str) -> None:
    if op not in ("=", "!=", "~"):
        raise QueryError(f"tag{op}{value}: tags support =, != and ~")
    test = "tag LIKE ?" if op == "~" else "tag = ? COLLATE NOCASE"
    arg = f"%{value}%" if op == "~" else value
    negate = "NOT " if op == "!=" else ""
    subquery = f"SELECT track_id FROM tags WHERE {test} AND score >= 0.5"  # noqa: S608 - constant
    query.clauses.append(f"id {negate}IN ({subquery})")
    query.params.append(arg)


def _add_column_clause(query: TrackQuery, name: str, op: str, value: str, numeric: bool) -> None:
    if op == "~":
        query.clauses.append(f"{name} LIKE ?")
        query.params.append(f"%{value}%")
        return
    if numeric:
        try:
            arg: object = float(value) if "." in value else int(value)
        except ValueError as exc:
            raise QueryError(f"{name}{op}{value}: {name} is a number") from exc
    else:
        if op in ("<", ">", "<=", ">="):
            raise QueryError(f"{name}{op}{value}: {name} is text; use = or ~")
        arg = value
    collate = "" if numeric else " COLLATE NOCASE"
    if (name, op, arg) == ("missing", "=", 0):  # the library's "present" filter: almost all
        query.unselective[len(query.clauses)] = "+missing = ?"
    query.clauses.append(f"{name} {op} ?{collate}")
    query.params.append(arg)
