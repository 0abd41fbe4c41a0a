"""Where training examples come from: a folder of audio files or the user's library database.

Both sources produce the same `TrackItem` list, so every later step (caching, cropping, pairing,
splitting, label subsampling) is written once. An item carries what the objectives can use as a
learning signal besides the audio itself: tags (file genres, the user's yes/no tags), the album
and artist it belongs to, and the playlists it sits in (co-occurrence positives, as in the
playlist-pairs literature; DESIGN.md found album co-membership is what transfers "style").

Labels are three-valued per tag: 1.0 positive, 0.0 an explicit negative (the user said "not this
tag"), absent = unknown. Unknown is not negative: `label_matrix` returns a mask so the BCE loss
only counts known labels.

Tag names are matched case-insensitively ("Rock" from one file, "rock" from another are one tag);
the vocabulary spells each tag the way most tracks spell it.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from musicssl.engine.metadata import MetadataError, read_metadata
from musicssl.engine.scanner import AUDIO_EXTENSIONS

__all__ = [
    "TrackItem",
    "album_key",
    "from_folder",
    "from_library",
    "group_key",
    "label_matrix",
    "split",
    "subsample_labels",
    "vocabulary",
]

# A label >= this counts as positive (file/user tags are 1.0/0.0; auto tags are probabilities).
POSITIVE = 0.5
SPLIT_KEYS = ("album", "artist", "track")
# Separates album artist from album title inside an album key; cannot occur in either tag.
_KEY_SEP = "\x1f"


@dataclass
class TrackItem:
    """One training track; everything but `path` is optional side information."""

    path: str
    track_id: int | None = None
    album: str | None = None  # album key (album artist + album, or folder name as fallback)
    artist: str | None = None
    labels: dict[str, float] = field(default_factory=dict)  # tag -> 1.0 / 0.0 explicit negative
    playlists: list[int] = field(default_factory=list)  # playlist ids containing it


def album_key(
    path: str, album: str | None, album_artist: str | None, artist: str | None
) -> str | None:
    """Album artist + album title; the parent folder when the album tag is missing.

    The artist is part of the key because "Greatest Hits" by two artists are two albums. The
    folder fallback uses the whole parent path, not just its name, so two artists' "CD1" folders
    stay apart; untagged rips are usually one album per folder, which is what a split must keep
    together to avoid leaking near-duplicate audio between train and test.
    """
    title = (album or "").strip()
    if title:
        who = (album_artist or artist or "").strip()
        return f"{who.casefold()}{_KEY_SEP}{title.casefold()}"
    parent = os.path.dirname(os.path.abspath(path))
    return f"folder:{parent}" if parent else None


def _clean_labels(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    """First spelling wins per case-insensitive tag; later pairs override earlier values."""
    spelled: dict[str, str] = {}
    values: dict[str, float] = {}
    for tag, value in pairs:
        tag = str(tag).strip()
        if not tag:
            continue
        key = tag.casefold()
        spelled.setdefault(key, tag)
        values[key] = float(value)
    return {spelled[k]: v for k, v in values.items()}


def from_folder(root: str | os.PathLike[str], tags_from_genre: bool = True) -> list[TrackItem]:
    """Every audio file under `root` (sorted by path, so runs are reproducible).

    A file whose tags cannot be read is still a track (its audio may be fine): it just has no
    labels and takes its album from its folder. Files that cannot be decoded are found later by
    `AudioCache.warm`, which reports them.
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    paths: list[str] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                paths.append(os.path.abspath(os.path.join(folder, name)))
    items = []
    for path in sorted(paths):
        try:
            meta = read_metadata(path)
        except MetadataError:
            items.append(TrackItem(path=path, album=album_key(path, None, None, None)))
            continue
        labels = _clean_labels((g, 1.0) for g in meta.genres) if tags_from_genre else {}
        artist = (meta.album_artist or meta.artist or "").strip() or None
        items.append(
            TrackItem(
                path=path,
                album=album_key(path, meta.album, meta.album_artist, meta.artist),
                artist=artist,
                labels=labels,
            )
        )
    return items


def from_library(
    db_path: str | os.PathLike[str], sources: Sequence[str] = ("file", "user")
) -> list[TrackItem]:
    """Present, readable tracks of a library DB with their tags and playlist memberships.

    Label precedence is user > file > auto: a user's explicit "no" (score 0) overrides a genre
    written in the file. Auto tags (the model's own predictions) only count when asked for, and
    then only as positives above 0.5 — training on one's own confident mistakes as negatives
    would reinforce them. The DB is opened read-only: training must never migrate or lock the
    library the app is using.
    """
    unknown = sorted(set(sources) - {"file", "user", "auto"})
    if unknown:
        raise ValueError(f"unknown tag source(s) {unknown}; choose from file, user, auto")
    db_path = Path(db_path)
    if not db_path.is_file():
        raise FileNotFoundError(f"{db_path}: no library database")
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT id, path, artist, album, album_artist FROM tracks "
            "WHERE missing = 0 AND status != 'error' ORDER BY id"
        ).fetchall()
        tag_rows: list[tuple[int, str, str, float]] = []
        if sources:
            marks = ",".join("?" * len(sources))
            tag_rows = conn.execute(
                f"SELECT track_id, tag, source, score FROM tags WHERE source IN ({marks})",  # noqa: S608 - placeholders only
                list(sources),
            ).fetchall()
        playlist_rows = conn.execute(
            "SELECT DISTINCT track_id, playlist_id FROM playlist_items ORDER BY playlist_id"
        ).fetchall()
    finally:
        conn.close()

    rank = {"auto": 0, "file": 1, "user": 2}
    per_track: dict[int, list[tuple[int, str, float]]] = defaultdict(list)
    for track_id, tag, source, score in tag_rows:
        if source == "auto":
            if score < POSITIVE:
                continue
            score = 1.0
        per_track[track_id].append((rank[source], tag, float(score)))
    playlists: dict[int, list[int]] = defaultdict(list)
    for track_id, playlist_id in playlist_rows:
        playlists[track_id].append(int(playlist_id))

    items = []
    for track_id, path, artist, album, album_artist in rows:
        # Lower-precedence sources first, so the higher one's value is written last and wins.
        ordered = sorted(per_track.get(track_id, []), key=lambda r: r[0])
        items.append(
            TrackItem(
                path=path,
                track_id=int(track_id),
                album=album_key(path, album, album_artist, artist),
                artist=((album_artist or artist or "").strip() or None),
                labels=_clean_labels((tag, score) for _, tag, score in ordered),
                playlists=playlists.get(track_id, []),
            )
        )
    return items


def vocabulary(items: Sequence[TrackItem], min_count: int = 1) -> list[str]:
    """Tags with at least `min_count` positive tracks, sorted case-insensitively.

    Negatives do not count: a tag nobody has is not learnable, however many "no"s it has.
    """
    counts: Counter[str] = Counter()
    spellings: dict[str, Counter[str]] = defaultdict(Counter)
    for item in items:
        for tag, value in item.labels.items():
            key = tag.casefold()
            spellings[key][tag] += 1
            if value >= POSITIVE:
                counts[key] += 1
    vocab = []
    for key, n in counts.items():
        if n >= min_count:
            # Most common spelling; ties go to the alphabetically first so the result is stable.
            best = min(spellings[key].items(), key=lambda kv: (-kv[1], kv[0]))[0]
            vocab.append(best)
    return sorted(vocab, key=lambda t: (t.casefold(), t))


def group_key(item: TrackItem, by: str) -> str:
    """The key a group-wise split keeps together; a track with no such key is its own group."""
    if by not in SPLIT_KEYS:
        raise ValueError(f"split by {by!r}: choose from {', '.join(SPLIT_KEYS)}")
    value = getattr(item, by) if by != "track" else None
    if value is None:
        return f"track:{item.path}"
    return f"{by}:{value.casefold() if by == 'artist' else value}"


def split(
    items: Sequence[TrackItem],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    by: str = "album",
    seed: int = 0,
) -> tuple[list[TrackItem], list[TrackItem], list[TrackItem]]:
    """Train/validation/test lists in which no album (or artist) appears in two parts.

    Tracks of one album share production, mastering and often whole passages, so a track-wise
    split measures memorisation. Groups are visited in a seeded random order and each goes to
    the part that is furthest below its target share of tracks, so parts land close to
    `fractions` even with uneven album sizes. Items keep their input order inside each part.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError(f"fractions must be three non-negative numbers, got {fractions}")
    total = float(sum(fractions))
    targets = np.array([f / total for f in fractions])
    groups: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        groups[group_key(item, by)].append(i)
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    filled = np.zeros(3)
    assignment = np.zeros(len(items), dtype=np.int64)
    n = max(1, len(items))
    for g in order:
        members = groups[keys[g]]
        # The part whose share would stay furthest below its target after taking this group.
        deficit = targets - (filled + len(members)) / n
        deficit[targets == 0] = -np.inf
        part = int(np.argmax(deficit))
        filled[part] += len(members)
        assignment[members] = part
    parts: tuple[list[TrackItem], list[TrackItem], list[TrackItem]] = ([], [], [])
    for i, item in enumerate(items):
        parts[int(assignment[i])].append(item)
    return parts


def subsample_labels(items: Sequence[TrackItem], fraction: float, seed: int = 0) -> list[TrackItem]:
    """Copies of `items` where only `fraction` of the labelled tracks keep their labels.

    For the limited-label runs (1 %, 10 %, 100 %) of the literature: the other tracks stay in the
    list, unlabelled, so semi-supervised objectives still train on their audio. At least one
    labelled track survives any fraction > 0.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    labelled = [i for i, item in enumerate(items) if item.labels]
    keep_n = round(fraction * len(labelled))
    if fraction > 0 and labelled:
        keep_n = max(1, keep_n)
    rng = np.random.default_rng(seed)
    keep = set(rng.choice(labelled, size=keep_n, replace=False).tolist()) if keep_n else set()
    out = []
    for i, item in enumerate(items):
        labels = dict(item.labels) if i in keep else {}
        out.append(dataclasses.replace(item, labels=labels, playlists=list(item.playlists)))
    return out


def label_matrix(items: Sequence[TrackItem], vocab: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(targets (N, T) float32, mask (N, T) bool): mask is True where the label is known."""
    column = {tag.casefold(): j for j, tag in enumerate(vocab)}
    if len(column) != len(vocab):
        raise ValueError("vocabulary has tags that differ only in case")
    targets = np.zeros((len(items), len(vocab)), dtype=np.float32)
    mask = np.zeros((len(items), len(vocab)), dtype=bool)
    for i, item in enumerate(items):
        for tag, value in item.labels.items():
            j = column.get(tag.casefold())
            if j is not None:
                targets[i, j] = 1.0 if value >= POSITIVE else 0.0
                mask[i, j] = True
    return targets, mask
