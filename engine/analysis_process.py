"""Run an analysis job in a child Python process: progress and cancel over its pipes.

Why a process and not a thread (what the desktop app uses this for): a thread shares the GIL
with the GUI. The first analysis in a process imports torch's decomposition stack (sympy, when
the bundle check builds the network on the meta device), the ONNX exporter (torch._dynamo,
`onnx` → ml_dtypes) and opens an ONNX Runtime session; several of these steps hold the GIL for
0.3-1.3 s at a time (found with faulthandler's watchdog; figures in docs/BENCHMARKS.md), which
freezes the event loop however the work is scheduled on threads. A child has its own
interpreter, so the GUI only reads short JSON lines. A crash in native code (a decoder, ONNX
Runtime) also ends the child, not the app; the job is resumable, so the next run continues.

The child lowers its own CPU priority (NICENESS): on a busy machine the GUI's event loop must
win the CPU over background analysis, which only slows down when something else wants the
cores.

Protocol: the parent writes "cancel" lines (closing stdin, e.g. because the parent died, also
cancels); the child writes one JSON object per line to stdout: {"progress": [done, total,
path]} any number of times, then exactly one {"report": {...}} or {"error": {...}}.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from .analysis_types import AnalysisOptions, AnalysisReport
from .errors import MusicSSLError
from .excerpts import ExcerptPolicy

if TYPE_CHECKING:
    from .analysis import AnalysisJob

Progress = Callable[[int, int, str], None]
STDERR_TAIL_LINES = 60
NICENESS = 5


class AnalysisProcessError(MusicSSLError, RuntimeError):
    """The analysis stopped with an error meant for the user (bad device choice, broken model)."""


class AnalysisCrashError(RuntimeError):
    """The analysis process failed unexpectedly (a bug or a crash); the details are attached."""


def options_to_json(options: AnalysisOptions) -> str:
    return json.dumps(dataclasses.asdict(options))


def options_from_json(text: str) -> AnalysisOptions:
    fields = json.loads(text)
    return AnalysisOptions(**{**fields, "policy": ExcerptPolicy(**fields["policy"])})


def report_from_dict(fields: dict[str, Any]) -> AnalysisReport:
    errors = [(str(path), str(message)) for path, message in fields.pop("errors", [])]
    return AnalysisReport(**fields, errors=errors)


class AnalysisProcess:
    """Like `AnalysisJob` (`run()` blocks, `cancel()` is thread-safe), but in a child process."""

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        options: AnalysisOptions | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.db_path = os.fspath(db_path)
        self.options = options or AnalysisOptions()
        self.progress = progress
        self._lock = threading.Lock()
        self._cancelled = False
        self._proc: subprocess.Popen[str] | None = None

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._proc is not None:
                _send_cancel(self._proc)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            __name__,
            self.db_path,
            options_to_json(self.options),
        ]

    def run(self) -> AnalysisReport:
        proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        with self._lock:
            self._proc = proc
            if self._cancelled:
                _send_cancel(proc)
        stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        reader = threading.Thread(
            target=lambda: stderr_tail.extend(proc.stderr or ()), daemon=True, name="stderr"
        )
        reader.start()
        outcome: dict[str, Any] = {}
        try:
            for line in proc.stdout or ():
                message = _parse(line)
                if message is None:
                    continue
                if "progress" in message and self.progress is not None:
                    done, total, path = message["progress"]
                    self.progress(int(done), int(total), str(path))
                elif "report" in message or "error" in message:
                    outcome = message
        except BaseException:
            _send_cancel(proc)  # e.g. the progress callback failed: stop the child too
            raise
        finally:
            returncode = proc.wait()
            reader.join(timeout=5)
            with self._lock:
                self._proc = None
            with contextlib.suppress(OSError):
                proc.stdin.close()  # type: ignore[union-attr] - opened with PIPE
        if "report" in outcome:
            return report_from_dict(outcome["report"])
        if "error" in outcome:
            error = outcome["error"]
            if error.get("user"):
                raise AnalysisProcessError(error["message"])
            raise _with_detail(AnalysisCrashError(error["message"]), error.get("traceback", ""))
        raise _with_detail(
            AnalysisCrashError(f"the analysis process ended unexpectedly (exit code {returncode})"),
            "".join(stderr_tail),
        )


def _send_cancel(proc: subprocess.Popen[str]) -> None:
    try:
        if proc.stdin is not None:
            proc.stdin.write("cancel\n")
            proc.stdin.flush()
    except (BrokenPipeError, OSError, ValueError):  # it has ended (or is ending) already
        pass


def _parse(line: str) -> dict[str, Any] | None:
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _with_detail(exc: Exception, detail: str) -> Exception:
    """Attach the child's traceback or stderr, so the GUI's error tooltip shows where it failed."""
    if detail and hasattr(exc, "add_note"):
        exc.add_note(detail.rstrip())
    return exc


# ---------------------------------------------------------------------------------------------
# the child


def _protocol_stream() -> IO[str]:
    """The real stdout for protocol lines; fd 1 then points at stderr, so a stray print (ours, a
    library's, or native code's) can never corrupt the protocol."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def _watch_stdin(job: AnalysisJob) -> None:
    for line in sys.stdin:
        if line.strip() == "cancel":
            job.cancel()
            return
    job.cancel()  # stdin closed: the parent is gone, stop at the next track


def child_main(argv: list[str]) -> int:
    db_path, options_json = argv
    out = _protocol_stream()
    if hasattr(os, "nice"):  # POSIX; Windows keeps normal priority
        os.nice(NICENESS)
    write_lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with write_lock:
            out.write(json.dumps(message) + "\n")

    from .analysis import AnalysisJob  # torch: only in the child, never in the GUI

    job = AnalysisJob(
        db_path,
        options_from_json(options_json),
        progress=lambda done, total, path: send({"progress": [done, total, path]}),
    )
    threading.Thread(target=_watch_stdin, args=(job,), daemon=True, name="cancel").start()
    try:
        report = job.run()
    except MusicSSLError as exc:
        send({"error": {"user": True, "message": str(exc)}})
        return 1
    except Exception as exc:  # noqa: BLE001 - reported to the parent with its traceback
        send(
            {
                "error": {
                    "user": False,
                    "message": f"{type(exc).__name__}: {exc}",
                    "traceback": "".join(traceback.format_exception(exc)),
                }
            }
        )
        return 1
    send({"report": dataclasses.asdict(report)})
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
