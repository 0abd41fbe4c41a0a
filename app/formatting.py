"""Small text helpers shared by the views, so every view shows times and counts the same way."""

from __future__ import annotations

import os
from typing import Any


def duration(seconds: float | None) -> str:
    """3:07, 1:02:03, or '' when unknown."""
    if seconds is None or seconds < 0:
        return ""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta(seconds: float | None) -> str:
    """'about 3 min left' style estimate, '' when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    if seconds < 60:
        return f"{int(seconds) + 1} s left"
    if seconds < 3600:
        return f"about {int(round(seconds / 60))} min left"
    return f"about {seconds / 3600:.1f} h left"


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def track_title(track: dict[str, Any]) -> str:
    """The title, else the file name: untagged files still need a readable name."""
    title = track.get("title")
    if title:
        return str(title)
    path = track.get("path") or ""
    return os.path.splitext(os.path.basename(str(path)))[0] or "(untitled)"


def track_label(track: dict[str, Any]) -> str:
    artist = track.get("artist")
    return f"{artist} — {track_title(track)}" if artist else track_title(track)
