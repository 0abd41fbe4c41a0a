"""`musicssl --self-test`: check that this installation works end to end, on audio it makes up.

Why: a packaged app can start and still lack a shared library, a Qt plugin or its shipped model,
which would only show when someone first analyses their music. The self-test runs what a first
session runs -- pick and load the model, scan, decode and analyse audio, query the index, build the
main window -- on tones it writes itself, in a temporary library and data folder, so it never reads
or writes the user's library, models or settings. One line per check; exit status 0 only when no
check failed (a WARN, such as no PortAudio, degrades a feature and does not fail the run).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import platform
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from . import paths
from .library import Library

if TYPE_CHECKING:
    from .analysis import AnalysisReport
    from .bundle import Bundle

SAMPLE_RATE = 44100
SECONDS = 4.0
# File name -> partials (Hz). "tone-a copy" repeats "tone-a", so the index has a known answer.
TONES: dict[str, tuple[float, ...]] = {
    "tone-a": (220.0, 440.0, 660.0),
    "tone-b": (311.1, 392.0, 466.2),
    "tone-c": (1250.0, 2500.0, 3750.0),
}
SEED_NAME, COPY_NAME = "tone-a", "tone-a copy"
WORKER_TRACKS = 1  # analysed by the app's worker process; the rest in this one
# Identical samples give identical embeddings and excerpt sets: a similarity score of 1 up to
# rounding (cosine blended with set matching, engine/excerpt_sets.py).
SAME_AUDIO_SCORE = 0.99
GUI_WAIT_SECONDS = 10.0  # at most, for the track table to list the test files
# Compiled modules a broken install or bundle most often lacks; imported first, by name.
NATIVE_MODULES = ("numpy", "torch", "torchaudio", "av", "soxr", "hnswlib", "onnxruntime", "onnx")


class CheckFailed(Exception):
    """A check ran and found the installation wrong (rather than crashing)."""


@dataclass
class _State:
    """What the checks hand on to the ones after them."""

    root: Path
    lib: Library | None = None
    bundle: Bundle | None = None
    files: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[_State], str]
    needs: tuple[str, ...] = ()
    optional: bool = False  # a failure is a WARN: the app works without it, minus a feature


def write_tone(path: Path, partials: tuple[float, ...], seconds: float = SECONDS) -> None:
    """A 16-bit stereo WAV of decaying notes, written with the stdlib (no encoder needed)."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = np.exp(-3.0 * (t % 0.5))  # a new note every half second: onsets, not one hum
    signal = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate(partials))
    mono = 0.3 * envelope * signal / np.max(np.abs(signal))
    pcm = (np.stack([mono, 0.8 * mono], axis=1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())


def _version(module: Any, dist: str) -> str:
    version = getattr(module, "__version__", None)
    if version:
        return str(version)
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _check_runtime(state: _State) -> str:
    versions = [f"Python {platform.python_version()}"]
    for name in NATIVE_MODULES:
        versions.append(f"{name} {_version(importlib.import_module(name), name)}")
    from .device import select_device  # after the loop: a missing torch is named there

    return ", ".join(versions) + f"; device {select_device('auto')}"


def _check_library(state: _State) -> str:
    state.lib = Library(state.root / "library.db")
    return f"new library {state.lib.path}"


def _check_model(state: _State) -> str:
    from .models import SHIPPED, list_bundles, shipped_models_dir

    assert state.lib is not None
    info = state.lib.active_model()
    state.bundle = info.load()  # builds the network and loads the weights: the real test
    kind = f"trained, {info.n_tags} tags" if info.trained else "untrained: similarity only"
    shipped = sum(b.source == SHIPPED for b in list_bundles())
    return (
        f"{info.name} ({info.model_id[:12]}, {info.architecture}, {info.source}, {kind}); "
        f"{shipped} shipped in {shipped_models_dir()}"
    )


def _check_audio(state: _State) -> str:
    music = state.root / "music"
    music.mkdir()
    for name, partials in TONES.items():
        state.files[name] = music / f"{name}.wav"
        write_tone(state.files[name], partials)
    state.files[COPY_NAME] = music / f"{COPY_NAME}.wav"
    state.files[COPY_NAME].write_bytes(state.files[SEED_NAME].read_bytes())
    return f"{len(state.files)} WAV files of {SECONDS:g} s in {music}"


def _check_scan(state: _State) -> str:
    assert state.lib is not None
    report = state.lib.scan([state.root / "music"])
    if report.errors:
        raise CheckFailed(f"{report.errors[0][0]}: {report.errors[0][1]}")
    if report.added != len(state.files):
        raise CheckFailed(f"{report.added} of {len(state.files)} files added")
    return report.summary()


def _check_onnx(state: _State) -> str:
    from .inference import make_runner

    assert state.bundle is not None
    runner = make_runner(state.bundle, "cpu", "onnx")  # exports, then compares with torch
    return f"ONNX Runtime agrees with torch ({runner.frontend_name} front-end)"


def _check_report(report: AnalysisReport, expected: int) -> str:
    if report.errors:
        raise CheckFailed(f"{report.errors[0][0]}: {report.errors[0][1]}")
    if report.analyzed != expected:
        raise CheckFailed(f"analysed {report.analyzed} tracks, expected {expected}")
    return report.summary()


def _check_worker(state: _State) -> str:
    """One track through the desktop app's analysis worker: a child `python -m` process (in a
    frozen app: this program started again with `-m`, see packaging/entry.py)."""
    from .analysis import AnalysisOptions

    assert state.lib is not None
    report = state.lib.analysis_process(AnalysisOptions(limit=WORKER_TRACKS)).run()
    return f"child process: {_check_report(report, WORKER_TRACKS)}"


def _check_analysis(state: _State) -> str:
    """The rest in this process, as `musicssl analyze` does."""
    assert state.lib is not None
    pending = state.lib.analysis_pending()
    summary = _check_report(state.lib.analyze(), pending)
    analysed = state.lib.status()["analyzed"]
    if analysed != len(state.files):
        raise CheckFailed(f"{analysed} of {len(state.files)} tracks analysed in all")
    return summary


def _check_similarity(state: _State) -> str:
    assert state.lib is not None
    results = state.lib.similar([str(state.files[SEED_NAME])], n=len(state.files))
    if len(results) != len(state.files) - 1:
        raise CheckFailed(f"{len(results)} neighbours, expected {len(state.files) - 1}")
    best = results[0]
    if Path(best.path) != state.files[COPY_NAME] or best.score < SAME_AUDIO_SCORE:
        raise CheckFailed(
            f"nearest to {SEED_NAME} is {Path(best.path).name} (score {best.score:.3f}), "
            f"expected its copy at score >= {SAME_AUDIO_SCORE}"
        )
    return f"{COPY_NAME} is nearest to {SEED_NAME} (score {best.score:.3f})"


def _check_playback(state: _State) -> str:
    try:
        import sounddevice as sd
    except OSError as exc:
        raise CheckFailed(f"no PortAudio ({exc}): preview playback is off") from None
    try:
        device = sd.query_devices(kind="output")
    except sd.PortAudioError as exc:
        raise CheckFailed(f"{sd.get_portaudio_version()[1]}, but no output device: {exc}") from None
    return f"{sd.get_portaudio_version()[1]}; output device {device['name']!r}"


@contextlib.contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    """Set (or, with None, unset) one environment variable for the duration of a block."""
    saved = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def _check_app_icon() -> None:
    """The packaged SVG is found through importlib.resources and Qt's SVG plugin can draw it."""
    from importlib import resources

    from PySide6.QtGui import QIcon

    svg = resources.files("musicssl.resources") / "icons" / "musicssl.svg"
    if not svg.is_file():
        raise CheckFailed(f"the app icon is missing from the package resources ({svg})")
    if QIcon(str(svg)).pixmap(64, 64).isNull():
        raise CheckFailed(f"Qt cannot draw {svg}: is its SVG plugin missing?")


def _check_gui(state: _State) -> str:
    # The engine does not depend on the app; the self-test checks the whole installation.
    import PySide6
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:  # off screen unless the caller chose a platform: a check, not a window
        with _environment("QT_QPA_PLATFORM", os.environ.get("QT_QPA_PLATFORM", "offscreen")):
            app = QApplication(["musicssl-self-test"])
    from musicssl.app.settings import AppSettings
    from musicssl.app.window import MainWindow

    assert state.lib is not None
    settings = AppSettings(QSettings(str(state.root / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(state.lib, settings)
    try:
        window.show()
        # The table's row count arrives from its page loader's worker thread (app/models/
        # track_table.py): on a busy machine that takes more than one turn of the event loop.
        deadline = time.monotonic() + GUI_WAIT_SECONDS
        app.processEvents()
        while window.track_model.rowCount() != len(state.files) and time.monotonic() < deadline:
            time.sleep(0.01)
            app.processEvents()
        rows = window.track_model.rowCount()
        if rows != len(state.files):
            raise CheckFailed(f"the track table lists {rows} tracks, expected {len(state.files)}")
        if window.grab().isNull():
            raise CheckFailed("the main window did not render")
        _check_app_icon()
    finally:
        window.close()
        window.deleteLater()
        app.processEvents()
    qt = f"Qt platform {app.platformName()!r}, PySide6 {PySide6.__version__}"
    return f"main window listing {rows} tracks; {qt}"


CHECKS = (
    Check("runtime", _check_runtime),
    Check("library", _check_library, ("runtime",)),
    Check("model", _check_model, ("library",)),
    Check("audio", _check_audio, ("runtime",)),
    Check("scan", _check_scan, ("library", "audio")),
    Check("onnx", _check_onnx, ("model",)),
    Check("worker", _check_worker, ("model", "scan")),
    Check("analysis", _check_analysis, ("model", "scan")),
    Check("similarity", _check_similarity, ("analysis",)),
    Check("playback", _check_playback, optional=True),
    Check("gui", _check_gui, ("scan",)),
)


def _describe_install() -> str:
    try:
        version = importlib.metadata.version("musicssl")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    kind = "frozen app" if getattr(sys, "frozen", False) else "Python"
    return f"MusicSSL {version} self-test ({kind} {sys.executable}, {platform.platform()})"


def run_self_test(out: TextIO | None = None, checks: tuple[Check, ...] = CHECKS) -> int:
    """Run the checks in a temporary folder; print a report to `out`; 0 if none failed, else 1."""
    out = out or sys.stdout
    print(_describe_install(), file=out, flush=True)
    passed: set[str] = set()
    failed: list[str] = []
    temp = tempfile.TemporaryDirectory(prefix="musicssl-selftest-", ignore_cleanup_errors=True)
    with temp as tmp:
        state = _State(Path(tmp))
        with _environment(paths.DATA_ENV_VAR, str(state.root / "data")):
            try:
                for check in checks:
                    start = time.perf_counter()
                    status, detail = _run_one(check, state, passed)
                    if status == "PASS":
                        passed.add(check.name)
                    elif status == "FAIL":
                        failed.append(check.name)
                    seconds = time.perf_counter() - start
                    print(f"  {status:<4}  {check.name:<10}  {detail}  [{seconds:.1f} s]", file=out)
                    out.flush()  # one line at a time: a check that hangs shows where
            finally:
                if state.lib is not None:
                    state.lib.close()
    if failed:
        print(f"RESULT: FAIL ({', '.join(failed)})", file=out, flush=True)
        return 1
    print(f"RESULT: PASS ({len(passed)} of {len(checks)} checks passed)", file=out, flush=True)
    return 0


def _run_one(check: Check, state: _State, passed: set[str]) -> tuple[str, str]:
    missing = [name for name in check.needs if name not in passed]
    if missing:
        return "SKIP", f"needs {', '.join(missing)}"
    try:
        return "PASS", check.run(state)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, then the next check runs
        detail = str(exc) if isinstance(exc, CheckFailed) else f"{type(exc).__name__}: {exc}"
        return ("WARN" if check.optional else "FAIL"), detail
