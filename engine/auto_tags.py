"""Auto tags: written from each track's stored tag probabilities, re-applied when the rule changes.

Auto tags are a function of the model, the track's mean tag probabilities and the bundle's
per-tag thresholds. Analysis stores the probabilities per model (`tag_probs`) next to the tags it
writes, and the `settings` row RULE_KEY records which model and thresholds the library's auto
tags follow. Two cases would otherwise leave them stale: a bundle re-exported with new
thresholds keeps its model id (the id hashes the weights, so nothing is re-analysed), and
switching back to a model whose embeddings exist analyses nothing. `refresh` drops every auto
tag and writes them again from the active model's stored probabilities, in one transaction and
without decoding anything. Tracks with no stored probabilities for that model (not analysed
with it yet, or analysed before probabilities were stored) get theirs when analysis reaches
them (`analysis.pending_tracks`); an untrained bundle leaves no auto tags at all. `refresh`
runs at the start of every analysis (the app starts one after each model switch): 3.4 s for
100,000 tracks with 8–9 auto tags each, too slow for a GUI thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

import numpy as np

from . import db as dbmod
from .bundle import BundleConfig

RULE_KEY = "auto_tag_rule"


def tagging(config: BundleConfig) -> bool:
    """Whether analysis with this bundle writes auto tags (and stores tag probabilities)."""
    return bool(config.trained and config.tags)


def rule(model_id: str, config: BundleConfig) -> str:
    """What the auto tags follow: the model and, when it may tag at all, its thresholds."""
    tags = tagging(config)
    return json.dumps(
        {
            "model": model_id,
            "tags": list(config.tags) if tags else [],
            "thresholds": [float(t) for t in config.thresholds] if tags else [],
        },
        sort_keys=True,
    )


def write(
    tx: sqlite3.Connection,
    track_id: int,
    model_id: str,
    config: BundleConfig,
    probs: np.ndarray,
) -> None:
    """Replace one track's auto tags (none from an untrained bundle) and store its probabilities."""
    tx.execute("DELETE FROM tags WHERE track_id = ? AND source = 'auto'", [track_id])
    if not tagging(config):
        return
    probs = np.asarray(probs, np.float32)
    tx.execute(
        "INSERT OR REPLACE INTO tag_probs (model_id, track_id, probs) VALUES (?, ?, ?)",
        [model_id, track_id, probs.tobytes()],
    )
    _insert(tx, track_id, config.tags, config.thresholds, probs)


def _insert(
    tx: sqlite3.Connection,
    track_id: int,
    tags: Sequence[str],
    thresholds: Sequence[float],
    probs: np.ndarray,
) -> None:
    tx.executemany(
        "INSERT INTO tags (track_id, tag, source, score) VALUES (?, ?, 'auto', ?)",
        [
            (track_id, tag, float(p))
            for tag, p, t in zip(tags, probs, thresholds, strict=True)
            if p >= t
        ],
    )


def refresh(db: dbmod.sqlite_utils.Database, model_id: str, config: BundleConfig) -> int:
    """Make the auto tags follow this model's rule if they follow another; returns how many
    tracks got theirs back from stored probabilities (0 when the rule was already this one)."""
    current = rule(model_id, config)
    row = db.conn.execute("SELECT value FROM settings WHERE key = ?", [RULE_KEY]).fetchone()
    if row is not None and row[0] == current:
        return 0
    retagged = 0
    with dbmod.transaction(db) as tx:
        tx.execute("DELETE FROM tags WHERE source = 'auto'")
        stored = tx.execute(
            "SELECT track_id, probs FROM tag_probs WHERE model_id = ?", [model_id]
        ).fetchall()
        for track_id, blob in stored if tagging(config) else ():
            # The model id hashes the tag head too, so the vocabulary cannot have changed.
            _insert(tx, track_id, config.tags, config.thresholds, np.frombuffer(blob, np.float32))
            retagged += 1
        tx.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [RULE_KEY, current],
        )
    return retagged


__all__ = ["RULE_KEY", "refresh", "rule", "tagging", "write"]
