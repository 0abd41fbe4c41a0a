"""One desktop app per library: a QLockFile next to the database, held while the window is open.

Why a lock at all: SQLite already keeps the *data* safe with two writers (WAL, `BEGIN
IMMEDIATE`, a 10 s busy timeout), but two windows on one library would each rescan on start,
each queue the same analysis (twice the work, and the last index save wins until the next
rebuild), and each keep its own undo history and cached pages of a library the other is
changing. That is confusing, never useful, so the second window is refused with a message that
says who holds the library.

Why QLockFile in the app, not a `filelock` shared with the CLI: the CLI must keep working while
the app is open (`musicssl tracks`, `similar`, a scripted `scan`); SQLite's own locking is what
makes those safe, and blocking them behind the app would only get in the way. QLockFile records
the holder's PID and host name, so the message can name them, and a lock left by a crashed app
on this machine is detected as stale (its PID is gone) and taken over. Stale detection by age
is off (`setStaleLockTime(0)`): an app may stay open for days. A lock from another machine (a
library on a network share) is never broken automatically; the message names the file to delete
if that machine is really gone.
"""

from __future__ import annotations

import os
from pathlib import Path

from musicssl.engine.errors import MusicSSLError
from PySide6.QtCore import QLockFile

LOCK_SUFFIX = ".lock"


class LibraryInUseError(MusicSSLError):
    """Another MusicSSL window has this library open."""


class InstanceLock:
    """Exclusive ownership of one library database by this process, until `release()`."""

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.db_path = Path(db_path)
        self.path = self.db_path.with_name(self.db_path.name + LOCK_SUFFIX)
        self._lock = QLockFile(str(self.path))
        self._lock.setStaleLockTime(0)

    def acquire(self) -> None:
        """Take the lock or raise `LibraryInUseError` saying who has it (never waits)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._lock.tryLock(0):
            return
        if self._lock.error() != QLockFile.LockError.LockFailedError:
            raise LibraryInUseError(
                f"Cannot create the lock file {self.path} for the library {self.db_path} "
                "(is the folder writable?)"
            )
        info = self._lock.getLockInfo()  # (pid, host, app name); empty if unreadable
        pid, host = (info[0], info[1]) if info and len(info) == 3 and info[0] > 0 else (0, "")
        holder = f"process {pid} on {host or 'this computer'}" if pid else "another process"
        raise LibraryInUseError(
            f"MusicSSL is already open on the library {self.db_path} ({holder}).\n\n"
            "Switch to that window, or start MusicSSL with --db to open another library. "
            f"If that program is no longer running, delete {self.path} and try again."
        )

    def release(self) -> None:
        if self._lock.isLocked():
            self._lock.unlock()

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["LOCK_SUFFIX", "InstanceLock", "LibraryInUseError"]
