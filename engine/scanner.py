"""Walk folders/files and keep the `tracks`, `tags` (source 'file'), `library_folders` and
`scan_errors` tables in step with the disk.

Two phases: a cheap walk (`os.scandir` + one `stat` per audio file) that finds every file and so
gives the progress bar a total, then the per-file work in batches of `BATCH` files, each batch one
transaction. An unchanged file (same size and mtime as its row) is never opened, so a rescan of a
large library costs little more than the walk. Files that vanished are marked `missing`, never
deleted: their user tags, playlist entries and embeddings stay until they come back.

Metadata is read on the calling thread: mutagen takes ~0.25 ms for a tagged MP3 (measured with
bench/scan_bench.py), the DB write ~0.05 ms, so one core already clears the 1,000 files/s target
several times over; a process pool would add pickling and start-up for little gain on 2 cores
where the other core is busy with the GUI or analysis.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlite_utils

from . import db as dbmod
from .metadata import CANNOT_READ, MetadataError, TrackMeta, read_metadata

# fmt: off
AUDIO_EXTENSIONS = frozenset((
    ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".wav", ".aif", ".aiff",
    ".wma", ".ape", ".wv", ".mka",
))
# fmt: on
PLAYLIST_EXTENSIONS = frozenset((".m3u", ".m3u8", ".pls", ".xspf"))
# Trash folders that file managers keep at the top of removable drives: their files were deleted.
TRASH_FOLDERS = frozenset((".Trash", ".Trashes", "$RECYCLE.BIN", "RECYCLER"))
BATCH = 500  # files per transaction: a crash loses at most this much work

Progress = Callable[[int, "int | None", str], None]
Cancel = Callable[[], bool]

BAD_NAME = "file name is not valid UTF-8 — rename it"
EMPTY = "empty file (0 bytes)"


@dataclass
class ScanReport:
    """What one scan did.

    Each file read in this scan counts once: in `added` or `updated` when it was readable, in
    `errors` (path, message) when it became an error row. `errors` also lists the folder and link
    problems recorded in `scan_errors`. `restored` (missing files found again) overlaps
    `unchanged`/`updated`; `missing` counts files newly marked missing.
    """

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    missing: int = 0
    restored: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    playlist_files: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cancelled: bool = False

    def summary(self) -> str:
        parts = [
            f"{self.added:,} added",
            f"{self.updated:,} updated",
            f"{self.unchanged:,} unchanged",
        ]
        if self.missing:
            parts.append(f"{self.missing:,} missing")
        if self.restored:
            parts.append(f"{self.restored:,} restored")
        if self.errors:
            parts.append(f"{len(self.errors):,} error{'s' if len(self.errors) != 1 else ''}")
        if self.playlist_files:
            n = len(self.playlist_files)
            parts.append(f"{n:,} playlist file{'s' if n != 1 else ''}")
        text = ", ".join(parts) + f" in {self.seconds:.1f} s"
        return ("cancelled: " + text) if self.cancelled else text


@dataclass
class _Row:
    id: int
    size: int | None
    mtime: float | None
    missing: int
    retry: bool  # failed for an OS reason (permissions, drive gone): size and mtime stay the same


@dataclass
class _Found:
    path: str  # what is stored: the real path, or a displayable one for undecodable names
    os_path: str  # what the OS opens
    size: int
    mtime: float
    bad_name: bool = False


def _storable(path: str) -> tuple[str, bool]:
    """(path as stored, name is bad): lone surrogates from undecodable bytes cannot go to SQLite."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace"), True
    return path, False


def _prefix_bounds(root: str) -> tuple[str, str]:
    """[low, high) of every path strictly under `root`: an index range scan, no LIKE escaping."""
    prefix = root if root.endswith(os.sep) else root + os.sep
    return prefix, prefix[:-1] + chr(ord(os.sep) + 1)


def _under(path: str, root: str) -> bool:
    low, high = _prefix_bounds(root)
    return path == root or low <= path < high


class _Scan:
    def __init__(
        self,
        db: sqlite_utils.Database,
        progress: Progress | None,
        cancel: Cancel | None,
    ):
        self.db = db
        self.progress = progress
        self.cancel = cancel or (lambda: False)
        self.report = ScanReport()
        self.started = dbmod.now()
        self.existing: dict[str, _Row] = {}
        self.found: list[_Found] = []
        self.seen: set[str] = set()
        self.visited: set[tuple[int, int]] = set()
        self.unlisted: list[str] = []  # folders we could not list: their tracks are not "missing"
        self.folder_errors: list[tuple[str, str]] = []
        self.cancelled = False

    # -- phase 0: roots and what the DB already knows ----------------------------------------
    def load_under(self, root: str) -> None:
        low, high = _prefix_bounds(root)
        rows = self.db.execute(
            "SELECT path, id, size, mtime, missing, status = 'error' AND instr(error, ?) > 0 "
            "FROM tracks WHERE path = ? OR (path >= ? AND path < ?)",
            [CANNOT_READ, root, low, high],
        )
        for path, id_, size, mtime, missing, retry in rows:
            self.existing[path] = _Row(id_, size, mtime, missing, bool(retry))

    def folder_error(self, path: str, message: str) -> None:
        shown, _ = _storable(path)
        self.folder_errors.append((shown, message))
        self.report.errors.append((shown, message))

    # -- phase 1: the walk -----------------------------------------------------------------
    def add_file(self, path: str, st: os.stat_result) -> None:
        shown, bad = _storable(path)
        if shown in self.seen:
            return
        self.seen.add(shown)
        self.found.append(_Found(shown, path, st.st_size, st.st_mtime, bad))

    def walk(self, root: str) -> None:
        stack = [root]
        last_report = 0.0
        while stack:
            if self.cancel():
                self.cancelled = True
                return
            folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except PermissionError:
                self.unlisted.append(folder)
                self.folder_error(folder, "cannot read folder: permission denied")
                continue
            except OSError as exc:
                self.unlisted.append(folder)
                self.folder_error(folder, f"cannot read folder: {exc.strerror or exc}")
                continue
            subfolders = []
            for entry in entries:
                sub = self.visit(entry)
                if sub is not None:
                    subfolders.append(sub)
            stack.extend(reversed(subfolders))
            if self.progress is not None and time.monotonic() - last_report > 0.1:
                last_report = time.monotonic()
                self.progress(len(self.found), None, _storable(folder)[0])

    def visit(self, entry: os.DirEntry) -> str | None:
        """Handle one directory entry; return it if it is a folder to descend into."""
        path = entry.path
        try:
            is_dir = entry.is_dir()  # follows links: linked folders are part of the library
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.folder_error(path, "symlink loop: the link resolves to itself")
            else:
                self.folder_error(path, f"cannot read: {exc.strerror or exc}")
            return None
        if is_dir:
            if entry.name in TRASH_FOLDERS or entry.name.startswith(".Trash-"):
                return None
            try:
                st = entry.stat()
            except OSError as exc:
                self.folder_error(path, f"cannot read folder: {exc.strerror or exc}")
                return None
            key = (st.st_dev, st.st_ino)
            if key in self.visited:
                if entry.is_symlink():
                    self.folder_error(
                        path, "symlink loop: links to a folder that is already scanned (skipped)"
                    )
                return None
            self.visited.add(key)
            return path
        ext = os.path.splitext(entry.name)[1].lower()
        if ext in AUDIO_EXTENSIONS:
            if entry.name.startswith("._"):
                return None  # macOS AppleDouble resource forks: never audio
            try:
                st = entry.stat()
            except FileNotFoundError:
                if entry.is_symlink():
                    self.broken_link(path)
                return None  # else: deleted while we walked
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    self.folder_error(path, "symlink loop: the link resolves to itself")
                else:
                    self.folder_error(path, f"cannot read: {exc.strerror or exc}")
                return None
            if stat.S_ISREG(st.st_mode):
                self.add_file(path, st)
        elif ext in PLAYLIST_EXTENSIONS:
            try:
                if entry.is_file():
                    self.add_playlist(path)
                elif entry.is_symlink():
                    self.broken_link(path)
            except OSError:
                pass
        elif entry.is_symlink():
            try:
                if not entry.is_file() and not os.path.exists(path):
                    self.broken_link(path)
            except OSError:
                pass
        return None

    def add_playlist(self, path: str) -> None:
        """A playlist file to import after the scan. One whose name SQLite cannot store (invalid
        UTF-8) is an error row: importing it aborted the whole scan, on every rescan."""
        if _storable(path)[1]:
            self.folder_error(path, BAD_NAME)
        else:
            self.report.playlist_files.append(path)

    def broken_link(self, path: str) -> None:
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        self.folder_error(path, f"broken symlink: its target {_storable(target)[0]} does not exist")

    # -- phase 2: read what changed, write in batches --------------------------------------
    def process(self) -> None:
        total = len(self.found)
        done = 0
        for start in range(0, total, BATCH):
            ops: list[tuple[_Found, _Row | None, TrackMeta | None, str | None]] = []
            restored: list[int] = []
            for item in self.found[start : start + BATCH]:
                if self.cancel():
                    self.cancelled = True
                    break
                row = self.existing.get(item.path)
                if (
                    row is not None
                    and row.size == item.size
                    and row.mtime == item.mtime
                    and not row.retry
                ):
                    self.report.unchanged += 1
                    if row.missing:
                        restored.append(row.id)
                else:
                    meta, error = self.read(item)
                    ops.append((item, row, meta, error))
                done += 1
                if self.progress is not None:
                    self.progress(done, total, item.path)
            self.write(ops, restored)
            if self.cancelled:
                return

    def read(self, item: _Found) -> tuple[TrackMeta | None, str | None]:
        if item.bad_name:
            return None, BAD_NAME
        if item.size == 0:
            return None, EMPTY
        try:
            return read_metadata(item.os_path), None
        except MetadataError as exc:
            return None, exc.reason
        except Exception as exc:  # noqa: BLE001 - one odd file must not end the scan
            return None, f"unexpected error reading the file: {type(exc).__name__}: {exc}"

    def write(self, ops, restored: list[int]) -> None:
        if not ops and not restored:
            return
        now = dbmod.now()
        with dbmod.transaction(self.db) as conn:
            if restored:
                conn.executemany(
                    "UPDATE tracks SET missing = 0, updated_at = ? WHERE id = ?",
                    [(now, id_) for id_ in restored],
                )
                self.report.restored += len(restored)
            for item, row, meta, error in ops:
                m = meta or TrackMeta()
                values = (
                    item.size, item.mtime, m.duration, m.sample_rate, m.channels, m.codec,
                    m.title, m.artist, m.album, m.album_artist, m.genre, m.year, m.track_number,
                    "error" if error else "new", error, now,
                )  # fmt: skip
                if row is None:
                    (track_id,) = conn.execute(
                        "INSERT INTO tracks (size, mtime, duration, sample_rate, channels, codec, "
                        "title, artist, album, album_artist, genre, year, track_number, status, "
                        "error, updated_at, path, added_at, duration_decoded, missing) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0) "
                        "ON CONFLICT(path) DO UPDATE SET size = excluded.size, "
                        "mtime = excluded.mtime, duration = excluded.duration, "
                        "duration_decoded = 0, sample_rate = excluded.sample_rate, "
                        "channels = excluded.channels, codec = excluded.codec, "
                        "title = excluded.title, artist = excluded.artist, "
                        "album = excluded.album, album_artist = excluded.album_artist, "
                        "genre = excluded.genre, year = excluded.year, "
                        "track_number = excluded.track_number, status = excluded.status, "
                        "error = excluded.error, missing = 0, updated_at = excluded.updated_at "
                        "RETURNING id",
                        (*values, item.path, now),
                    ).fetchone()
                    if not error:
                        self.report.added += 1
                else:
                    track_id = row.id
                    conn.execute(
                        "UPDATE tracks SET size = ?, mtime = ?, duration = ?, "
                        "duration_decoded = 0, sample_rate = ?, channels = ?, codec = ?, "
                        "title = ?, artist = ?, album = ?, album_artist = ?, genre = ?, "
                        "year = ?, track_number = ?, status = ?, error = ?, missing = 0, "
                        "updated_at = ? WHERE id = ?",
                        (*values, track_id),
                    )
                    if not error:
                        self.report.updated += 1
                    if row.missing:
                        self.report.restored += 1
                    conn.execute(
                        "DELETE FROM tags WHERE track_id = ? AND source = 'file'", [track_id]
                    )
                if m.genres:
                    conn.executemany(
                        "INSERT OR IGNORE INTO tags (track_id, tag, source, score) "
                        "VALUES (?, ?, 'file', 1.0)",
                        [(track_id, g) for g in m.genres],
                    )
                if error:
                    self.report.errors.append((item.path, error))


def record_error(db: sqlite_utils.Database, path: str, message: str) -> None:
    """Keep a problem found after the walk (a playlist file that cannot be read) in `scan_errors`,
    where `musicssl errors` and the GUI list it; the next scan of its folder clears it."""
    with dbmod.transaction(db) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO scan_errors (path, error, seen_at) VALUES (?, ?, ?)",
            (_storable(path)[0], message, dbmod.now()),
        )


def _classify(
    paths: Sequence[str | os.PathLike[str]],
) -> tuple[list[str], list[str], list[str], list[str]]:
    """(outermost folders, all folders, files, paths that do not exist): absolute, de-duplicated.

    Only the outermost folders are walked; a folder inside another one is still remembered."""
    folders, files, absent = [], [], []
    for raw in paths:
        path = os.path.abspath(os.path.expanduser(os.fspath(raw)))
        if os.path.isdir(path):
            folders.append(path)
        elif os.path.lexists(path):
            files.append(path)
        else:
            absent.append(path)
    folders = sorted(set(folders))
    outer: list[str] = []
    for folder in folders:  # sorted, so a parent comes before anything under it
        if not any(_under(folder, kept) for kept in outer):
            outer.append(folder)
    return outer, folders, sorted(set(files)), sorted(set(absent))


def scan(
    db: sqlite_utils.Database,
    paths: Sequence[str | os.PathLike[str]],
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> ScanReport:
    """Scan folders and/or single files into the library; never raises for bad files or folders.

    Folders are remembered in `library_folders`. `progress(done, total, path)` is called during
    the walk with total None, then per file with the total known; `cancel()` returning True stops
    between files, keeping what was written and marking nothing missing.
    """
    t0 = time.perf_counter()
    job = _Scan(db, progress, cancel)
    report = job.report
    folders, all_folders, files, absent = _classify(paths)
    if all_folders:
        with dbmod.transaction(db) as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO library_folders (path, added_at) VALUES (?, ?)",
                [(_storable(f)[0], job.started) for f in all_folders],
            )

    for folder in folders:
        job.load_under(_storable(folder)[0])
        try:
            st = os.stat(folder)
            job.visited.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    for path in absent:
        shown = _storable(path)[0]
        job.load_under(shown)
        if shown not in job.existing:
            job.folder_error(path, "not found")
    single_files: list[str] = []
    for path in files:
        shown = _storable(path)[0]
        if any(_under(shown, f) for f in folders):
            continue  # the folder walk meets it
        job.load_under(shown)
        if os.path.splitext(path)[1].lower() in PLAYLIST_EXTENSIONS:
            job.add_playlist(path)
            continue
        single_files.append(path)

    for folder in folders:
        job.walk(folder)
        if job.cancelled:
            break
    for path in single_files:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if os.path.islink(path):
                job.broken_link(path)
            continue
        except OSError as exc:
            job.folder_error(path, f"cannot read: {exc.strerror or exc}")
            continue
        if stat.S_ISREG(st.st_mode):
            job.add_file(path, st)

    if not job.cancelled:
        job.process()
    report.cancelled = job.cancelled

    # Finish: missing files, this scan's folder problems, folder timestamps.
    now = dbmod.now()
    gone: list[int] = []
    if not job.cancelled:
        unlisted = [_storable(u)[0] for u in job.unlisted]
        for path, row in job.existing.items():
            if row.missing or path in job.seen:
                continue
            if any(_under(path, u) for u in unlisted):
                continue  # behind a folder we could not read: unknown, not gone
            gone.append(row.id)
    scanned_roots = [_storable(p)[0] for p in folders + files + absent]
    with dbmod.transaction(db) as conn:
        if gone:
            conn.executemany(
                "UPDATE tracks SET missing = 1, updated_at = ? WHERE id = ?",
                [(now, id_) for id_ in gone],
            )
            report.missing = len(gone)
        if not job.cancelled:
            for root in scanned_roots:
                low, high = _prefix_bounds(root)
                conn.execute(
                    "DELETE FROM scan_errors WHERE (path = ? OR (path >= ? AND path < ?)) "
                    "AND seen_at < ?",
                    [root, low, high, job.started],
                )
            conn.executemany(
                "UPDATE library_folders SET last_scan_at = ? WHERE path = ?",
                [(now, _storable(f)[0]) for f in all_folders],
            )
        conn.executemany(
            "INSERT OR REPLACE INTO scan_errors (path, error, seen_at) VALUES (?, ?, ?)",
            [(path, message, now) for path, message in job.folder_errors],
        )
    report.seconds = time.perf_counter() - t0
    return report
