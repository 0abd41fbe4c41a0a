"""The one object the CLI and the GUI talk to: they never touch SQL, files or torch themselves.

Keeping every user-visible behaviour behind `Library` means the headless CLI can script and test
anything the GUI does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import db as dbmod
from . import embeddings, folders, playlist_formats, playlist_trust, playlists, scanner
from . import similar as similarity
from .errors import MusicSSLError
from .index import SimilarityIndex, open_index
from .paths import default_db_path
from .track_query import TrackQuery, parse_filters
from .user_labels import UserLabelStats, user_label_stats

if TYPE_CHECKING:  # torch-heavy; imported when analysis or model management is used
    from .analysis import AnalysisJob, AnalysisOptions, AnalysisReport
    from .analysis_process import AnalysisProcess
    from .models import BundleInfo

Progress = Callable[[int, int | None, str], None]

TRACK_COLUMNS = (
    "id, path, title, artist, album, album_artist, genre, year, track_number, duration, "
    "sample_rate, channels, codec, status, error, missing, size, mtime, added_at, updated_at"
)


class TrackNotFound(MusicSSLError, LookupError):
    """A track reference (id or path) that matches nothing in the library."""


class Library:
    """A music library stored in one SQLite file (default: the platform's user data folder)."""

    def __init__(self, db_path: str | os.PathLike[str] | None = None):
        self.path = default_db_path(db_path)
        self.db = dbmod.connect(self.path)
        self._index: SimilarityIndex | None = None
        self._index_checksum = ""
        self._index_seen: tuple[int, int] | None = None  # DB state the index was checked at

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scanning ---------------------------------------------------------------------------
    def scan(
        self,
        paths: Sequence[str | os.PathLike[str]],
        progress: Progress | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> scanner.ScanReport:
        """Scan folders/files, then import playlists found there (their co-occurrences are data)."""
        report = scanner.scan(self.db, [os.fspath(p) for p in paths], progress, cancel)
        for playlist_file in report.playlist_files:
            try:
                playlists.import_file(self.db, playlist_file, only_if_changed=True)
            except playlist_formats.PlaylistFormatError as exc:
                report.errors.append((playlist_file, exc.reason))
                scanner.record_error(self.db, playlist_file, exc.reason)
        return report

    def folders(self) -> list[str]:
        return [
            row["path"] for row in self.db.query("SELECT path FROM library_folders ORDER BY path")
        ]

    def rescan(self, progress: Progress | None = None) -> scanner.ScanReport:
        """Incremental rescan of every remembered folder (what the app does on start)."""
        return self.scan(self.folders(), progress)

    def folder_removal(self, folder: str | os.PathLike[str]) -> folders.FolderRemoval:
        """What removing the folder would take out (tracks, user-tagged tracks, playlist
        entries), so the user can be asked first; changes nothing."""
        return folders.plan(self.db, folder)

    def remove_folder(self, folder: str | os.PathLike[str]) -> folders.FolderRemoval:
        """Forget a library folder: its tracks (with their tags, embeddings, index entries and
        playlist entries) leave the library; the files stay on disk. See engine/folders.py for
        what stays (nested folders' tracks, the user's playlists) and why."""
        return folders.remove(self.db, folder)

    # -- browsing ---------------------------------------------------------------------------
    def query(self, filters: Sequence[str] = (), search: str | None = None) -> TrackQuery:
        return parse_filters(list(filters), search)

    def tracks(
        self,
        filters: Sequence[str] = (),
        search: str | None = None,
        order_by: str = "artist",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        sql, params = self.query(filters, search).sql(
            TRACK_COLUMNS, order_by, descending, limit, offset
        )
        return list(self.db.query(sql, params))

    def track_ids(
        self,
        filters: Sequence[str] = (),
        search: str | None = None,
        order_by: str = "artist",
        descending: bool = False,
    ) -> list[int]:
        """Every matching id in order: one scan, after which any page is `tracks_by_id` of a
        slice (LIMIT/OFFSET re-sorts everything before the offset for each deep page)."""
        sql, params = self.query(filters, search).sql("id", order_by, descending)
        return [row[0] for row in self.db.execute(sql, params)]

    def tracks_by_id(self, ids: Sequence[int]) -> list[dict[str, Any] | None]:
        """Rows for a page of ids, in the same order; None where a track is gone meanwhile."""
        ids = [int(i) for i in ids]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        sql = f"SELECT {TRACK_COLUMNS} FROM tracks WHERE id IN ({marks})"  # noqa: S608
        found = {row["id"]: row for row in self.db.query(sql, ids)}
        return [found.get(i) for i in ids]

    def count(self, filters: Sequence[str] = (), search: str | None = None) -> int:
        q = self.query(filters, search)
        sql = f"SELECT count(*) FROM tracks WHERE {q.where()}"  # noqa: S608 - parsed filter
        return self.db.execute(sql, q.params).fetchone()[0]

    def resolve(self, ref: str | int) -> int:
        """A track id, or a file path (absolute or relative to the current folder)."""
        if isinstance(ref, int) or str(ref).isdigit():
            row = self.db.execute("SELECT id FROM tracks WHERE id = ?", [int(ref)]).fetchone()
        else:
            path = os.path.abspath(os.path.expanduser(str(ref)))
            row = self.db.execute("SELECT id FROM tracks WHERE path = ?", [path]).fetchone()
        if row is None:
            raise TrackNotFound(f"no track {ref!r} in the library {self.path}")
        return row[0]

    def track(self, ref: str | int) -> dict[str, Any]:
        track_id = self.resolve(ref)
        sql = f"SELECT {TRACK_COLUMNS} FROM tracks WHERE id = ?"  # noqa: S608 - constant columns
        row = next(self.db.query(sql, [track_id]))
        row["tags"] = self.tags(track_id)
        return row

    def status(self) -> dict[str, Any]:
        """Counts a person wants at a glance: how much is scanned, analysed, broken, missing."""
        by_status = dict(
            self.db.execute(
                "SELECT status, count(*) FROM tracks WHERE missing = 0 GROUP BY status"
            ).fetchall()
        )
        one = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "database": str(self.path),
            "folders": self.folders(),
            "tracks": one("SELECT count(*) FROM tracks WHERE missing = 0"),
            "new": by_status.get("new", 0),
            "analyzed": by_status.get("analyzed", 0),
            "errors": by_status.get("error", 0),
            "missing": one("SELECT count(*) FROM tracks WHERE missing = 1"),
            "scan_errors": one("SELECT count(*) FROM scan_errors"),
            "playlists": one("SELECT count(*) FROM playlists"),
            "hours": round((one("SELECT total(duration) FROM tracks WHERE missing = 0")) / 3600, 2),
        }

    def errors(self) -> list[dict[str, Any]]:
        """Everything that could not be read, for the "Missing & errors" view."""
        rows = list(
            self.db.query(
                "SELECT path, error, 'track' AS kind FROM tracks WHERE status = 'error' "
                "UNION ALL SELECT path, error, 'folder' AS kind FROM scan_errors ORDER BY path"
            )
        )
        return rows

    # -- tags -------------------------------------------------------------------------------
    def tags(self, track_id: int) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT tag, source, score FROM tags WHERE track_id = ? "
                "ORDER BY source, score DESC, tag",
                [track_id],
            )
        )

    def set_user_tag(self, track_id: int, tag: str, positive: bool = True) -> None:
        """A user's yes (1.0) or explicit no (0.0) — both are labels for fine-tuning."""
        tag = tag.strip()
        if not tag:
            raise ValueError("a tag cannot be empty")
        with dbmod.transaction(self.db) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO tags (track_id, tag, source, score) "
                "VALUES (?, ?, 'user', ?)",
                [track_id, tag, 1.0 if positive else 0.0],
            )

    def remove_user_tag(self, track_id: int, tag: str) -> None:
        with dbmod.transaction(self.db) as conn:
            conn.execute(
                "DELETE FROM tags WHERE track_id = ? AND tag = ? AND source = 'user'",
                [track_id, tag],
            )

    def tag_counts(self) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT tag, count(DISTINCT track_id) AS tracks FROM tags WHERE score >= 0.5 "
                "GROUP BY tag COLLATE NOCASE ORDER BY tracks DESC, tag"
            )
        )

    def user_label_stats(self) -> UserLabelStats:
        """How many tracks carry the user's own tags, yes/no label counts, per tag."""
        return user_label_stats(self.db)

    # -- playlists --------------------------------------------------------------------------
    def playlists(self) -> list[dict[str, Any]]:
        return playlists.list_playlists(self.db)

    def playlist_id(self, ref: str | int) -> int:
        """A playlist id or its exact name."""
        if isinstance(ref, int) or str(ref).isdigit():
            return int(ref)
        row = self.db.execute("SELECT id FROM playlists WHERE name = ?", [ref]).fetchone()
        if row is None:
            raise playlists.PlaylistNotFound(f"no playlist named {ref!r}")
        return row[0]

    def create_playlist(self, name: str, track_refs: Sequence[str | int] = ()) -> int:
        playlist_id = playlists.create(self.db, name)
        if track_refs:
            playlists.add_tracks(self.db, playlist_id, [self.resolve(r) for r in track_refs])
        return playlist_id

    def add_to_playlist(self, playlist: str | int, track_refs: Sequence[str | int]) -> None:
        playlists.add_tracks(
            self.db, self.playlist_id(playlist), [self.resolve(r) for r in track_refs]
        )

    def export_playlist(
        self,
        playlist: str | int,
        dest: str | os.PathLike[str],
        fmt: str | None = None,
        relative: bool = True,
    ) -> Path:
        return playlists.export(self.db, self.playlist_id(playlist), dest, fmt, relative)

    def import_playlist(self, path: str | os.PathLike[str], name: str | None = None):
        """Import a playlist file; its files not yet in the library are scanned in first.

        Only files the playlist may vouch for are scanned in; the rest are reported in
        `result.flagged`, never opened (see engine/playlist_trust.py for the rule and why).
        """
        entries = playlist_formats.read_playlist(path)
        unknown = [
            e.path
            for e in entries
            if self.db.execute("SELECT 1 FROM tracks WHERE path = ?", [e.path]).fetchone() is None
        ]
        to_scan, flagged = playlist_trust.triage(unknown, path, self.folders())
        if to_scan:
            scanner.scan(self.db, to_scan)
        result = playlists.import_file(self.db, path, name=name)
        result.flagged = {p: why for p, why in flagged.items() if p in result.missing}
        result.missing = [p for p in result.missing if p not in result.flagged]
        return result

    # -- models, analysis, similarity ---------------------------------------------------------
    def models(self) -> list[BundleInfo]:
        """Installed bundles plus the random-init baseline, so every listed model can be used."""
        from . import models

        return models.selectable_bundles()

    def active_model(self) -> BundleInfo:
        """The bundle analysis uses; `trained` False means similarity only, no auto tags."""
        from . import models

        return models.active_model(self.db)

    def use_model(self, ref: str) -> BundleInfo:
        """Switch models; the next analysis re-analyses tracks lacking the new model's embedding
        and first makes the auto tags follow it (engine/auto_tags.py). Not here: re-deriving
        the tags of 100k tracks takes seconds, and the app calls this on its GUI thread."""
        from . import models

        return models.set_active(self.db, ref)

    def analysis_job(
        self, options: AnalysisOptions | None = None, progress: Progress | None = None
    ) -> AnalysisJob:
        """A job to run on a worker thread (GUI) or directly (CLI); it has its own connection."""
        from .analysis import AnalysisJob

        return AnalysisJob(self.path, options, progress)

    def analysis_pending(self, retry_errors: bool = False) -> int:
        """Tracks the next analysis would take; cheap, so callers can skip starting one."""
        from . import auto_tags
        from .analysis import pending_tracks

        info = self.active_model()
        tags = auto_tags.tagging(info.config)
        return len(pending_tracks(self.db, info.model_id, retry_errors, tags))

    def analysis_process(
        self, options: AnalysisOptions | None = None, progress: Progress | None = None
    ) -> AnalysisProcess:
        """The same job in a child process, for the GUI: a thread would share the GIL, and
        the first analysis holds it for up to a second at a time (engine/analysis_process.py)."""
        from .analysis_process import AnalysisProcess

        return AnalysisProcess(self.path, options, progress)

    def analyze(
        self, options: AnalysisOptions | None = None, progress: Progress | None = None
    ) -> AnalysisReport:
        return self.analysis_job(options, progress).run()

    def index(self) -> SimilarityIndex:
        """The active model's index, reloaded when analysis (maybe another process) changed it.

        The embeddings checksum costs 30-80 ms at 100k tracks, so it is only re-read when the
        DB changed since the last check: `PRAGMA data_version` moves when any other connection
        (another process's analysis) commits, `total_changes` when this one writes.
        """
        conn = self.db.conn
        seen = (conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes)
        if self._index is not None and seen == self._index_seen:
            return self._index
        model_id = self.index_model_id()
        checksum = embeddings.checksum(self.db, model_id)
        if (
            self._index is None
            or self._index.model_id != model_id
            or checksum != self._index_checksum
        ):
            self._index = open_index(self.db, model_id)
            self._index_checksum = checksum
        self._index_seen = seen
        return self._index

    def index_model_id(self) -> str:
        """The space queries use (see embeddings.INDEX_MODEL_KEY); reading it needs no torch."""
        return embeddings.index_model(self.db) or self.active_model().model_id

    def similar(
        self,
        refs: Sequence[str | int],
        n: int = 20,
        *,
        max_per_artist: int | None = None,
        max_per_album: int | None = None,
        exclude_same_album: bool = False,
        tag: str | None = None,
    ) -> list[similarity.Result]:
        """Tracks that sound like the seed track(s), best first, seeds excluded."""
        index = self.index()
        return similarity.similar(
            self.db,
            index,
            [self.resolve(r) for r in refs],
            n,
            max_per_artist=max_per_artist,
            max_per_album=max_per_album,
            exclude_same_album=exclude_same_album,
            tag=tag,
            model_id=index.model_id,
        )

    def duplicates(self, threshold: float | None = None) -> list[list[dict]]:
        """Groups of tracks that are the same recording (another file, format or bitrate).

        Without a `threshold`, the cut-off of the searched model's space: a whitened one spreads
        re-encodes and other tracks apart far more than plain z (`similar.duplicate_threshold`).
        """
        index = self.index()
        if threshold is None:
            from . import models

            try:
                whitened = models.find_bundle(index.model_id).config.whitened
            except models.ModelNotFoundError:  # its bundle was removed; vectors remain
                whitened = False
            threshold = similarity.duplicate_threshold(whitened)
        groups = similarity.duplicates(self.db, index, threshold=threshold)
        sql = f"SELECT {TRACK_COLUMNS} FROM tracks WHERE id = ?"  # noqa: S608 - constant columns
        return [[next(self.db.query(sql, [i])) for i in group] for group in groups]

    def embedding_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """(track ids, unit vectors) of the model queries use, for the library map."""
        model_id = self.index_model_id()
        parts = list(embeddings.iter_all(self.db, model_id))
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        return np.concatenate([i for i, _ in parts]), np.concatenate([m for _, m in parts])
