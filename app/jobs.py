"""Background work for the GUI: one queue per worker thread, results back as Qt signals.

Why: SQLite connections and long computations must stay off the GUI thread (the window would
freeze), yet everything the user sees must be updated on it. A `JobQueue` owns one worker
thread that runs its jobs one at a time and opens its *own* `Library` there, so each connection
is only ever used from one thread. Progress is throttled before it is emitted: a scan reports
every file, and a signal per file would flood the GUI event loop.

The window keeps two queues: "jobs" for long, cancellable work shown in the status bar (scan,
analysis), and "queries" for short reads that must not wait behind a 20-minute analysis
(find similar, duplicates, the library map).
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from musicssl.engine.analysis_process import AnalysisProcess
from musicssl.engine.analysis_types import AnalysisOptions, AnalysisReport
from musicssl.engine.folders import FolderRemoval
from musicssl.engine.library import Library
from musicssl.engine.scanner import ScanReport
from PySide6.QtCore import QObject, QThread, Signal

# Progress signals at most this often (seconds): enough for a smooth bar, cheap for the GUI.
PROGRESS_INTERVAL = 0.1


class JobContext:
    """What a running job may use: the worker's own library, progress and cancel checks."""

    def __init__(self, worker: _Worker, job: Job) -> None:
        self._worker = worker
        self._job = job
        self._last_emit = 0.0

    def library(self) -> Library:
        """The worker thread's own `Library` (opened on first use, reused by later jobs)."""
        return self._worker.library()

    def progress(self, done: int, total: int | None, text: str = "") -> None:
        """Report progress; called from the worker thread, throttled to PROGRESS_INTERVAL."""
        now = time.monotonic()
        final = total is not None and done >= total
        if final or now - self._last_emit >= PROGRESS_INTERVAL:
            self._last_emit = now
            self._worker.owner.progress.emit(
                self._job, int(done), -1 if total is None else total, text
            )

    def cancelled(self) -> bool:
        return self._job.cancelled


class Job:
    """One unit of background work. Subclasses implement `run`; `cancel` may be called any time.

    `kind` lets the window avoid queueing the same kind of work twice (one pending analysis is
    enough, it picks up every new track).
    """

    kind = "job"
    title = "Working"
    cancellable = True
    visible = True  # shown in the status bar

    def __init__(self) -> None:
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(self, ctx: JobContext) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class CallJob(Job):
    """Run `fn(library)` on the worker; for short reads such as similar() or the map matrix."""

    kind = "call"
    cancellable = False
    visible = False

    def __init__(self, fn: Callable[[Library], Any], title: str = "Working", kind: str = "call"):
        super().__init__()
        self.fn = fn
        self.title = title
        self.kind = kind

    def run(self, ctx: JobContext) -> Any:
        return self.fn(ctx.library())


class ScanJob(Job):
    """Scan folders/files into the library, or rescan every remembered folder (`paths=None`)."""

    kind = "scan"

    def __init__(self, paths: Sequence[str | os.PathLike[str]] | None = None) -> None:
        super().__init__()
        self.paths = None if paths is None else [os.fspath(p) for p in paths]
        self.title = "Rescanning library" if paths is None else "Scanning"

    def run(self, ctx: JobContext) -> ScanReport:
        lib = ctx.library()
        paths = lib.folders() if self.paths is None else self.paths
        return lib.scan(paths, ctx.progress, ctx.cancelled)


class AnalysisRunJob(Job):
    """Analyse every pending track with the active model, in a child process.

    Why a process: the first analysis imports and exports models while holding the GIL for up
    to a second at a time, which a worker thread would turn into a frozen window (see
    engine/analysis_process.py). Resumable: after a cancel the tracks not reached stay "new"
    and the next run takes them.
    """

    kind = "analysis"
    title = "Analysing"

    def __init__(self, options: AnalysisOptions | None = None) -> None:
        super().__init__()
        self.options = options
        self._job: AnalysisProcess | None = None
        self._lock = threading.Lock()

    def cancel(self) -> None:
        super().cancel()
        with self._lock:
            if self._job is not None:
                self._job.cancel()

    def run(self, ctx: JobContext) -> AnalysisReport:
        lib = ctx.library()

        def progress(done: int, total: int, path: str) -> None:
            ctx.progress(done, total, Path(path).name)

        options = self.options or AnalysisOptions()
        if not lib.analysis_pending(options.retry_errors):
            # Nothing to analyse (the usual case at start): the in-process job only records
            # that and loads no model, so no child process (and torch start-up) is needed.
            return lib.analyze(options)
        with self._lock:
            self._job = lib.analysis_process(options, progress)
            if self.cancelled:
                self._job.cancel()
        return self._job.run()


class RemoveFoldersJob(Job):
    """Take library folders and their tracks out of the library (files stay on disk).

    On the jobs queue, so it never runs beside a scan or an analysis of the same tracks.
    """

    kind = "remove_folders"
    title = "Removing folders"
    cancellable = False

    def __init__(self, folders: Sequence[str]) -> None:
        super().__init__()
        self.folders = list(folders)

    def run(self, ctx: JobContext) -> list[FolderRemoval]:
        lib = ctx.library()
        return [lib.remove_folder(folder) for folder in self.folders]


class ImportPlaylistJob(Job):
    """Import a playlist file; its files not yet in the library are scanned in first."""

    kind = "import"
    cancellable = False

    def __init__(self, path: str, name: str | None = None) -> None:
        super().__init__()
        self.path = path
        self.name = name
        self.title = f"Importing {Path(path).name}"

    def run(self, ctx: JobContext) -> Any:
        return ctx.library().import_playlist(self.path, self.name)


class _Worker(QThread):
    """The thread behind a JobQueue: pops jobs, runs them, emits the outcome."""

    def __init__(self, owner: JobQueue, db_path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.owner = owner
        self.db_path = db_path
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self._library: Library | None = None

    def library(self) -> Library:
        if self._library is None:
            self._library = Library(self.db_path)
        return self._library

    def run(self) -> None:
        try:
            while True:
                job = self.jobs.get()
                if job is None:
                    return
                self.owner._set_current(job)
                if job.cancelled:
                    self.owner._set_current(None)
                    self.owner.cancelled_before_start.emit(job)
                    continue
                self.owner.started.emit(job)
                try:
                    result = job.run(JobContext(self, job))
                except Exception as exc:  # noqa: BLE001 - reported to the user, never fatal
                    self.owner._set_current(None)
                    detail = "".join(traceback.format_exception(exc))
                    self.owner.failed.emit(job, exc, detail)
                else:
                    self.owner._set_current(None)
                    self.owner.finished.emit(job, result)
                if self.jobs.empty():
                    self.owner.idle.emit()
        finally:
            if self._library is not None:
                self._library.close()
                self._library = None


class JobQueue(QObject):
    """Jobs run one after another on one worker thread; signals arrive on the GUI thread."""

    started = Signal(object)  # job
    progress = Signal(object, int, int, str)  # job, done, total (-1: unknown yet), text
    finished = Signal(object, object)  # job, result
    failed = Signal(object, object, str)  # job, exception, traceback text
    cancelled_before_start = Signal(object)  # job
    idle = Signal()

    def __init__(
        self, db_path: str | os.PathLike[str], name: str = "jobs", parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.name = name
        self._lock = threading.Lock()
        self._current: Job | None = None
        self._pending: list[Job] = []
        self._worker = _Worker(self, db_path)
        self._worker.setObjectName(f"musicssl-{name}")
        self._worker.start()

    # -- called from the worker ------------------------------------------------------------
    def _set_current(self, job: Job | None) -> None:
        with self._lock:
            self._current = job
            if job is not None and job in self._pending:
                self._pending.remove(job)

    # -- GUI side ------------------------------------------------------------------------------
    def submit(self, job: Job) -> Job:
        with self._lock:
            self._pending.append(job)
        self._worker.jobs.put(job)
        return job

    @property
    def current(self) -> Job | None:
        with self._lock:
            return self._current

    def pending(self) -> list[Job]:
        with self._lock:
            return list(self._pending)

    def has(self, kind: str, pending_only: bool = True) -> bool:
        """Whether a job of this kind is waiting (or also running, with pending_only=False)."""
        with self._lock:
            jobs = list(self._pending)
            if not pending_only and self._current is not None:
                jobs.append(self._current)
        return any(j.kind == kind and not j.cancelled for j in jobs)

    def busy(self) -> bool:
        with self._lock:
            return self._current is not None or bool(self._pending)

    def cancel_all(self) -> None:
        """Stop the running job and drop the waiting ones (they are skipped, not run)."""
        with self._lock:
            jobs = list(self._pending) + ([self._current] if self._current else [])
        for job in jobs:
            job.cancel()

    def shutdown(self, wait_ms: int = 30000) -> bool:
        """Cancel everything and stop the thread; True when it ended within `wait_ms`."""
        self.cancel_all()
        self._worker.jobs.put(None)
        return self._worker.wait(wait_ms)
