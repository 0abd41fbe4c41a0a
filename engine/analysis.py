"""The analysis job: decode → excerpts → batched encoder → per-track embedding + auto tags → DB.

Decoding runs in worker threads (PyAV releases the GIL) while the calling thread runs inference,
so both cores work. Results are committed every few tracks with the track's status, so a crash or
kill -9 loses at most one batch and a re-run continues where it stopped, never duplicating rows
(embeddings/tags are keyed by track and model). Memory is bounded whatever the file length: tracks
are cut into chunks of excerpts and only running sums are kept per track.

Progress is reported once with the total before the model loads, then for every finished track
(not per commit), so a progress bar and its time estimate move smoothly.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from . import auto_tags, decode, embeddings, excerpt_sets, models
from . import db as dbmod
from .analysis_types import AnalysisOptions, AnalysisReport
from .bundle import Bundle, load_bundle
from .device import configure_cpu_threads, select_device
from .excerpts import ExcerptChunk, excerpts
from .index import open_index
from .inference import make_runner

Progress = Callable[[int, int, str], None]
_DONE = object()


@dataclass(frozen=True)
class _Failure:
    message: str


@dataclass
class _TrackState:
    track_id: int
    path: str
    h_sum: np.ndarray | None = None  # of the model's excerpt descriptors (h, or h + statistics)
    p_sum: np.ndarray | None = None
    excerpt_set: excerpt_sets.SetBuilder = field(default_factory=excerpt_sets.SetBuilder)
    count: int = 0
    queued: int = 0  # excerpts handed to the encoder and not yet summed
    complete: bool = False
    decoded_seconds: float | None = None


def pending_tracks(
    conn: dbmod.sqlite_utils.Database, model_id: str, retry_errors: bool, tags: bool = False
) -> list:
    """Tracks that need this model's analysis: new ones, and analysed ones lacking its embedding,
    its excerpt set (engine/excerpt_sets.py) or, for a model that tags (`tags`), its stored tag
    probabilities (engine/auto_tags.py)."""
    sql = (
        "SELECT id, path, duration FROM tracks WHERE missing = 0 AND ("
        "status = 'new' OR (? AND status = 'error') OR (status = 'analyzed' AND (id NOT IN "
        "(SELECT track_id FROM embeddings WHERE model_id = ?) OR id NOT IN "
        "(SELECT track_id FROM excerpt_sets WHERE model_id = ?) OR (? AND id NOT IN "
        "(SELECT track_id FROM tag_probs WHERE model_id = ?))))) ORDER BY id"
    )
    args = [int(retry_errors), model_id, model_id, int(tags), model_id]
    return conn.execute(sql, args).fetchall()


class AnalysisJob:
    """One run over the library's pending tracks. `run()` blocks; `cancel()` is thread-safe."""

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        options: AnalysisOptions | None = None,
        progress: Progress | None = None,
    ):
        self.db_path = db_path
        self.options = options or AnalysisOptions()
        self.progress = progress
        self._cancel = threading.Event()  # the user asked to stop
        self._stop = threading.Event()  # decoders must stop (cancel, error, or end of run)
        self._finished = 0  # tracks done (analysed or failed), committed or about to be

    def cancel(self) -> None:
        self._cancel.set()
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(self) -> AnalysisReport:
        started = time.perf_counter()
        # Its own connection: the GUI keeps reading through another one while this one writes.
        conn = dbmod.connect(self.db_path)
        try:
            report = self._run(conn)
        finally:
            conn.conn.close()
        report.seconds = time.perf_counter() - started
        return report

    def _run(self, conn) -> AnalysisReport:
        opts = self.options
        info = models.active_model(conn)  # its model_id is the weights' hash: no need to load
        report = AnalysisReport(model_id=info.model_id, model_trained=info.trained)
        # New thresholds under the same model id, or a switch back: re-tag from stored probs.
        auto_tags.refresh(conn, info.model_id, info.config)
        tags = auto_tags.tagging(info.config)
        todo = pending_tracks(conn, info.model_id, opts.retry_errors, tags)
        if opts.limit is not None:
            todo = todo[: opts.limit]
        report.total = len(todo)
        if not todo:
            if not pending_tracks(conn, info.model_id, False):
                with dbmod.transaction(conn) as tx:
                    embeddings.publish_index_model(tx, info.model_id, True)
            return report
        # The total is known now; loading the model and building the runner take seconds.
        self._report_progress(report, "")
        bundle = load_bundle(info.path)
        models.register(conn, bundle)
        device = select_device(opts.device)
        configure_cpu_threads()
        if self._cancel.is_set():  # before the runner: a first ONNX export takes seconds
            report.cancelled = True
            return report
        runner = make_runner(bundle, device, opts.backend)
        index = open_index(conn, bundle.model_id)
        try:
            self._pipeline(conn, bundle, runner, index, todo, report)
        finally:
            index.save(conn)
        complete = not report.cancelled and not pending_tracks(conn, bundle.model_id, False)
        with dbmod.transaction(conn) as tx:
            embeddings.publish_index_model(tx, bundle.model_id, complete)
        return report

    # -- producer: decode in threads ---------------------------------------------------------
    def _decode_worker(self, tasks: queue.Queue, out: queue.Queue, rate: int, n: int) -> None:
        while not self._stop.is_set():
            try:
                track_id, path, duration = tasks.get_nowait()
            except queue.Empty:
                break
            try:
                for chunk in excerpts(path, rate, n, self.options.policy, duration):
                    if self._stop.is_set():
                        break
                    out.put((track_id, path, chunk))
            except Exception as exc:  # noqa: BLE001 - one bad file must never stop the job
                message = str(exc) if isinstance(exc, decode.DecodeError) else f"{path}: {exc!r}"
                out.put((track_id, path, _Failure(message)))
        out.put(_DONE)

    # -- consumer: batched inference, aggregation, DB writes -----------------------------------
    def _pipeline(self, conn, bundle: Bundle, runner, index, todo, report: AnalysisReport) -> None:
        opts = self.options
        cfg = bundle.config
        tasks: queue.Queue = queue.Queue()
        for row in todo:
            tasks.put(tuple(row))
        # A few chunks of look-ahead keep the encoder busy without holding many tracks in memory.
        out: queue.Queue = queue.Queue(maxsize=max(4, 2 * opts.decode_threads))
        workers = [
            threading.Thread(
                target=self._decode_worker,
                args=(tasks, out, cfg.sample_rate, cfg.excerpt_samples),
                daemon=True,
                name=f"decode-{i}",
            )
            for i in range(max(1, opts.decode_threads))
        ]
        for w in workers:
            w.start()

        states: dict[int, _TrackState] = {}
        buffer: list[tuple[_TrackState, np.ndarray]] = []
        finished: list[tuple[_TrackState, str | None]] = []  # (track, error)
        buffered = 0
        running = len(workers)

        def run_buffer() -> None:
            nonlocal buffered
            if not buffer:
                return
            batch = np.concatenate([x for _, x in buffer])
            owners = [s for s, x in buffer for _ in range(x.shape[0])]
            for start in range(0, batch.shape[0], opts.batch_size):
                chunk = batch[start : start + opts.batch_size]
                h, p = runner(chunk)
                if bundle.model.statistics:
                    # The statistics are FFTs in torch on CPU, next to any backend.
                    h = bundle.model.descriptor(torch.from_numpy(chunk), torch.from_numpy(h))
                    h = h.numpy()
                for row, state in enumerate(owners[start : start + opts.batch_size]):
                    if state.h_sum is None:
                        state.h_sum = np.zeros(h.shape[1], np.float64)
                        state.p_sum = np.zeros(p.shape[1], np.float64)
                    state.h_sum += h[row]
                    state.p_sum += p[row]
                    state.excerpt_set.add(h[row])
                    state.count += 1
                    state.queued -= 1
            buffer.clear()
            buffered = 0
            for state in list(states.values()):
                if state.complete and state.queued == 0:
                    del states[state.track_id]
                    finished.append((state, None))
                    self._report_progress(report, state.path)
            if len(finished) >= opts.commit_every:
                self._commit(conn, bundle, index, finished, report)

        try:
            while running:
                if self._cancel.is_set():
                    report.cancelled = True
                    break
                try:
                    item = out.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is _DONE:
                    running -= 1
                    continue
                track_id, path, payload = item
                state = states.setdefault(track_id, _TrackState(track_id, path))
                if isinstance(payload, _Failure):
                    states.pop(track_id, None)
                    finished.append((state, payload.message))
                    self._report_progress(report, path)
                    continue
                chunk: ExcerptChunk = payload
                if chunk.excerpts.shape[0]:
                    buffer.append((state, chunk.excerpts))
                    buffered += chunk.excerpts.shape[0]
                    state.queued += chunk.excerpts.shape[0]
                if chunk.last:
                    state.complete = True
                    state.decoded_seconds = chunk.decoded_seconds
                if buffered >= opts.batch_size:
                    run_buffer()
            if not report.cancelled:
                run_buffer()
        finally:
            self._stop.set()
            # Drain so blocked producers can exit, then write whatever is finished.
            while any(w.is_alive() for w in workers):
                with contextlib.suppress(queue.Empty):
                    out.get(timeout=0.05)
            self._commit(conn, bundle, index, finished, report)

    def _commit(self, conn, bundle: Bundle, index, finished: list, report: AnalysisReport) -> None:
        if not finished:
            return
        cfg = bundle.config
        now = dbmod.now()
        vectors: list[tuple[int, np.ndarray]] = []
        sets: list[tuple[int, np.ndarray]] = []
        with dbmod.transaction(conn) as tx:
            for state, error in finished:
                if error is not None or state.count == 0:
                    message = error or "no audio could be decoded"
                    tx.execute(
                        "UPDATE tracks SET status = 'error', error = ?, updated_at = ? "
                        "WHERE id = ?",
                        [message, now, state.track_id],
                    )
                    report.failed += 1
                    report.errors.append((state.path, message))
                    continue
                marked = tx.execute(
                    "UPDATE tracks SET status = 'analyzed', error = NULL, updated_at = ? "
                    "WHERE id = ?",
                    [now, state.track_id],
                )
                if marked.rowcount == 0:
                    continue  # removed from the library meanwhile (its folder was removed)
                h = torch.from_numpy((state.h_sum / state.count).astype(np.float32))[None]
                z = bundle.model.similarity(h)[0].numpy()
                vectors.append((state.track_id, z))
                groups = torch.from_numpy(state.excerpt_set.means().astype(np.float32))
                sets.append((state.track_id, bundle.model.similarity(groups).numpy()))
                auto_tags.write(tx, state.track_id, bundle.model_id, cfg, state.p_sum / state.count)
                if state.decoded_seconds is not None:
                    tx.execute(
                        "UPDATE tracks SET duration = ?, duration_decoded = 1 WHERE id = ?",
                        [state.decoded_seconds, state.track_id],
                    )
                duration = tx.execute(
                    "SELECT duration FROM tracks WHERE id = ?", [state.track_id]
                ).fetchone()[0]
                report.audio_seconds += duration or 0.0
                report.analyzed += 1
            embeddings.put(tx, bundle.model_id, vectors)
            excerpt_sets.put(tx, bundle.model_id, sets)
        if vectors:
            index.add([i for i, _ in vectors], np.stack([v for _, v in vectors]))
        finished.clear()

    def _report_progress(self, report: AnalysisReport, path: str) -> None:
        """Count a finished track (or, with an empty path, announce the total)."""
        if path:
            self._finished += 1
        if self.progress:
            self.progress(self._finished, report.total, path)
