"""Counts of the user's own labels (user tags): what fine-tuning on the library learns from.

The fine-tune dialog shows these before telling the user to run `musicssl-train finetune
--library`, so they can see whether they have tagged enough, and which tags. Only tracks that
training reads are counted (present and readable, as in training/datasets.py `from_library`).
A score >= 0.5 is a "yes"; below it is the user's explicit "no" (a negative label).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlite_utils

POSITIVE = 0.5
_USABLE = (
    "source = 'user' AND track_id IN "
    "(SELECT id FROM tracks WHERE missing = 0 AND status != 'error')"
)


@dataclass(frozen=True)
class TagLabels:
    tag: str
    positive: int  # tracks labelled "yes"
    negative: int  # tracks labelled "no"


@dataclass(frozen=True)
class UserLabelStats:
    tracks: int  # tracks carrying at least one user tag
    positive: int
    negative: int
    tags: list[TagLabels] = field(default_factory=list)  # most "yes" labels first


def user_label_stats(db: sqlite_utils.Database) -> UserLabelStats:
    """Two aggregate queries over the tags table (its tag index), whatever the library size."""
    conn = db.conn
    tracks = conn.execute(
        f"SELECT count(DISTINCT track_id) FROM tags WHERE {_USABLE}"  # noqa: S608 - constant
    ).fetchone()[0]
    rows = conn.execute(
        "SELECT min(tag), total(score >= ?), total(score < ?) FROM tags "  # noqa: S608 - constant
        f"WHERE {_USABLE} GROUP BY tag COLLATE NOCASE ORDER BY 2 DESC, 3 DESC, 1 COLLATE NOCASE",
        [POSITIVE, POSITIVE],
    ).fetchall()
    tags = [TagLabels(tag, int(pos), int(neg)) for tag, pos, neg in rows]
    return UserLabelStats(
        tracks=tracks,
        positive=sum(t.positive for t in tags),
        negative=sum(t.negative for t in tags),
        tags=tags,
    )
