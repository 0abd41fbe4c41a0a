"""Undoable tag edits (Ctrl+Z), as QUndoCommands over the library facade.

Why: accepting or rejecting an auto tag is a one-click action on possibly many tracks; a
mis-click must be cheap to take back. Each command remembers the user-tag rows it replaced
so undo restores exactly the previous state (absent, yes, or an explicit no).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from musicssl.engine.library import Library
from PySide6.QtGui import QUndoCommand

TagsChanged = Callable[[list[int]], None]


def _user_state(lib: Library, track_id: int, tag: str) -> bool | None:
    """True (yes), False (an explicit no), or None (no user row) for one track and tag."""
    for row in lib.tags(track_id):
        if row["source"] == "user" and row["tag"] == tag:
            return row["score"] >= 0.5
    return None


def _apply(lib: Library, track_id: int, tag: str, state: bool | None) -> None:
    if state is None:
        lib.remove_user_tag(track_id, tag)
    else:
        lib.set_user_tag(track_id, tag, positive=state)


class UserTagCommand(QUndoCommand):
    """Set (`state` True/False) or remove (`state` None) one user tag on some tracks."""

    def __init__(
        self,
        lib: Library,
        track_ids: Sequence[int],
        tag: str,
        state: bool | None,
        on_change: TagsChanged,
    ) -> None:
        verb = {True: "Tag", False: "Reject tag", None: "Remove tag"}[state]
        count = len(track_ids)
        where = "" if count == 1 else f" on {count} tracks"
        super().__init__(f"{verb} “{tag}”{where}")
        self.lib = lib
        self.track_ids = [int(t) for t in track_ids]
        self.tag = tag.strip()
        self.state = state
        self.on_change = on_change
        self.before = {t: _user_state(lib, t, self.tag) for t in self.track_ids}

    def redo(self) -> None:
        for track_id in self.track_ids:
            _apply(self.lib, track_id, self.tag, self.state)
        self.on_change(self.track_ids)

    def undo(self) -> None:
        for track_id, state in self.before.items():
            _apply(self.lib, track_id, self.tag, state)
        self.on_change(self.track_ids)
