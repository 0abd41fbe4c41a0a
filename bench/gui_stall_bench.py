"""How long does the GUI freeze while a library is imported and analysed in the background?

A QTimer fires every 10 ms on the GUI thread and records the time between its ticks; the
longest gap minus the interval is the worst event-loop stall a user would feel (target:
<= 100 ms). The window is the real one, fed the same way a folder drop feeds it
(`MainWindow.add_paths`: scan job, then analysis job), on short generated tracks.

    python bench/gui_stall_bench.py                 # 200 tracks of 4 s, offscreen
    python bench/gui_stall_bench.py --tracks 500 --seconds 10

The window first sits idle for --idle seconds: the stalls measured then are the machine's
own (other processes taking the CPU), the baseline against which the work's are read; with
--trace, a stall while every other thread of the app waits is such a scheduling delay, not
the GIL. Runs offscreen unless QT_QPA_PLATFORM is set; uses a temporary data folder and
library, so the user's own library and models are never touched.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TICK_MS = 10
FORMATS = (".mp3", ".flac", ".ogg", ".m4a", ".wav")


def make_tracks(folder: Path, n: int, seconds: float) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from audio_fixtures import write_audio

    for i in range(n):
        ext = FORMATS[i % len(FORMATS)]
        sub = folder / f"album{i // 10:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        write_audio(
            sub / f"{i:04d}{ext}",
            seconds=seconds,
            seed=i,
            tags={"title": f"Track {i}", "artist": f"Artist {i % 17}", "album": sub.name},
        )


def start_watchdog(last: list[float], late_s: float) -> None:
    """Print where the GUI thread is (Python stack) while a tick is overdue."""
    import threading
    import traceback

    gui = threading.get_ident()

    def watch() -> None:
        reported = 0.0
        while True:
            time.sleep(0.005)
            overdue = time.perf_counter() - last[0]
            if overdue > late_s and last[0] != reported:
                reported = last[0]
                frame = sys._current_frames().get(gui)
                stack = "".join(traceback.format_stack(frame, limit=8)) if frame else "?"
                print(f"--- GUI tick {overdue * 1000:.0f} ms late; GUI thread at:\n{stack}")
                me = threading.get_ident()
                for ident, f in sys._current_frames().items():
                    if ident not in (gui, me):
                        where = traceback.extract_stack(
                            f, limit=int(os.environ.get("STALL_TRACE_DEPTH", "4"))
                        )
                        print(
                            "    other thread: "
                            + " <- ".join(
                                f"{Path(e.filename).name}:{e.name}:{e.lineno}" for e in where[::-1]
                            )
                        )

    threading.Thread(target=watch, daemon=True, name="watchdog").start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each track")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after (s)")
    parser.add_argument(
        "--idle", type=float, default=5.0, help="seconds of idle baseline before the work"
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="analyse one file first, so the model's one-time ONNX export is cached (what every "
        "run but the first with a new model sees)",
    )
    parser.add_argument(
        "--trace",
        type=float,
        default=0.0,
        metavar="MS",
        help="print the GUI thread's stack whenever a tick is this late (diagnosis)",
    )
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="gui-stall-"))
    os.environ["MUSICSSL_DATA_DIR"] = str(work / "data")
    os.environ.pop("MUSICSSL_DB", None)
    music = work / "music"
    t0 = time.perf_counter()
    make_tracks(music, args.tracks, args.seconds)
    print(
        f"generated {args.tracks} tracks of {args.seconds:g} s in {time.perf_counter() - t0:.1f} s"
    )

    if args.warm:
        from musicssl.engine.library import Library as _Library

        warm = work / "warm"
        make_tracks(warm, 1, 2.0)
        with _Library(work / "warm.db") as wlib:
            wlib.scan([warm])
            wlib.analyze()
        print("warm-up: model exported and cached")

    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0]])
    from musicssl.app.settings import AppSettings
    from musicssl.app.window import MainWindow
    from musicssl.engine.library import Library

    lib = Library(work / "library.db")
    settings = AppSettings(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(lib, settings)
    window.resize(1200, 760)
    window.show()
    app.processEvents()

    gaps: list[tuple[float, float]] = []  # (time since start, gap in ms)
    marks: dict[str, float] = {}
    last = [time.perf_counter()]
    start = last[0]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append((now - start, (now - last[0]) * 1000.0))
        last[0] = now

    if args.trace:
        start_watchdog(last, args.trace / 1000.0)
    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    report_holder: list = []

    def on_scan(report) -> None:  # noqa: ANN001
        marks["scan"] = time.perf_counter() - start
        print(f"scan: {report.summary()}")

    def on_analysis(report) -> None:  # noqa: ANN001
        marks["analysis"] = time.perf_counter() - start
        report_holder.append(report)
        QTimer.singleShot(300, app.quit)  # keep measuring while the GUI takes in the results

    def on_failed(message: str) -> None:
        print(f"job failed: {message}\n{window.last_error}", file=sys.stderr)
        app.quit()

    window.scan_finished.connect(on_scan)
    window.analysis_finished.connect(on_analysis)
    window.job_failed.connect(on_failed)
    QTimer.singleShot(int(args.timeout * 1000), app.quit)

    def begin_work() -> None:
        marks["idle"] = time.perf_counter() - start
        window.add_paths([str(music)])  # what a folder drop does

    timer.start()
    QTimer.singleShot(int(args.idle * 1000), begin_work)
    app.exec()
    timer.stop()
    window.close()
    lib.close()

    if not report_holder:
        print("analysis did not finish", file=sys.stderr)
        return 1
    report = report_holder[0]
    print(f"analysis: {report.summary()}")
    idle = [g for t, g in gaps if t < marks["idle"]]
    work = [(t, g) for t, g in gaps if t >= marks["idle"]]
    if idle:
        print(
            f"idle baseline: {len(idle)} ticks over {marks['idle']:.1f} s; "
            f"longest stall {max(0.0, max(idle) - TICK_MS):.0f} ms, "
            f"{sum(g - TICK_MS > 100 for g in idle)} over 100 ms"
        )
    values = sorted(g for _, g in work)
    worst_t, worst = max(work, key=lambda x: x[1])
    p99 = values[int(0.99 * (len(values) - 1))]
    stall = max(0.0, worst - TICK_MS)
    phase = "scan" if worst_t < marks.get("scan", 0) else "analysis"
    print(
        f"GUI ticks while working: {len(values)} over {work[-1][0] - marks['idle']:.1f} s; "
        f"gap median {values[len(values) // 2]:.1f} ms, "
        f"p99 {p99:.1f} ms, max {worst:.1f} ms at {worst_t:.1f} s ({phase}), "
        f"{sum(g - TICK_MS > 100 for g in values)} stalls over 100 ms"
    )
    over = [f"{t:.1f} s ({g - TICK_MS:.0f} ms)" for t, g in work if g - TICK_MS > 100]
    print(
        f"phases: work from {marks['idle']:.1f} s, scan done {marks.get('scan', 0):.1f} s, "
        f"analysis done {marks.get('analysis', 0):.1f} s; stalls over 100 ms at: "
        + (", ".join(over) or "none")
    )
    print(
        f"longest event-loop stall: {stall:.0f} ms (target <= 100 ms) "
        f"{'OK' if stall <= 100 else 'OVER TARGET'}"
    )
    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
