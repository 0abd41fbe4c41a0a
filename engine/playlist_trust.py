"""Which entries of an imported playlist MusicSSL may act on by itself, and which it only reports.

A playlist file is data from anywhere (a download, a USB stick, someone else's folder), and any
line of it can name any path: `/etc/…`, `../../other-user/…`, `/dev/sda`, a FIFO that blocks
whoever opens it. Importing one must not make MusicSSL open or index files the user never
pointed it at, yet the common cases (a playlist next to its music, or one in ~/Playlists naming
files in a library folder) must just work. The rule, for entries not in the library yet:

- a regular file inside the playlist's own folder tree, or inside one of the library's folders,
  is scanned in (the user chose that file's neighbourhood by choosing the playlist or folder);
- anything else is *flagged* and never opened: files outside those trees (absolute paths
  elsewhere, `..` escapes, symlinks that lead out), and entries that are not regular files
  (device files, FIFOs, sockets, folders).

Entries already in the library are matched wherever they are: the user added them before.
Containment is judged on real paths (symlinks resolved), so a link inside the playlist's folder
that points elsewhere counts as elsewhere. Stream URLs never get this far: the parser skips and
counts them. The CLI lists flagged entries and the app shows them in a message; the user can add
such files on purpose (scan or Add Files) and import the playlist again.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence

OUTSIDE = "outside the playlist's folder and your library folders; not added"
NOT_A_FILE = "not a regular file (device, pipe, socket or folder); not opened"


def _real(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def _inside(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def triage(
    paths: Iterable[str], playlist_file: str | os.PathLike[str], library_folders: Iterable[str]
) -> tuple[list[str], dict[str, str]]:
    """(paths safe to scan in, {flagged path: reason}); paths that do not exist are in neither.

    `paths` are the absolute entry paths not in the library yet. Nonexistent entries are left
    out of both results: they stay "missing", which is what they are.
    """
    roots = [_real(os.path.dirname(os.path.abspath(os.fspath(playlist_file))))]
    roots += [_real(folder) for folder in library_folders]
    to_scan: list[str] = []
    flagged: dict[str, str] = {}
    for path in dict.fromkeys(paths):
        try:
            mode = os.stat(path).st_mode  # follows links: what a reader would open
        except OSError:
            continue
        if not stat.S_ISREG(mode):
            flagged[path] = NOT_A_FILE
        elif _inside(_real(path), roots):
            to_scan.append(path)
        else:
            flagged[path] = OUTSIDE
    return to_scan, flagged


__all__ = ["NOT_A_FILE", "OUTSIDE", "triage"]
