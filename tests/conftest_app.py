"""Fixtures for the GUI tests (imported by tests/test_app_*.py; pytest does not load it itself).

Real widgets, a real SQLite file, real encoded audio. What is faked: the user's answers to
modal dialogs (`FakeDialogs`), and the sound card (`FakeSoundDevice`, so no test ever makes a
sound and playback works the same on machines with and without an output device). QSettings
go to a temp folder so no test reads or writes the user's preferences.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from audio_fixtures import write_audio
from musicssl.app.dialogs import Dialogs
from musicssl.app.player import Player
from musicssl.app.settings import AppSettings
from musicssl.engine.library import Library
from PySide6.QtCore import QSettings

# Fixtures, for `from conftest_app import *` in the test modules (helpers are imported by name).
__all__ = [
    "analysed_template",
    "app_settings",
    "bool_refcount_guard",
    "empty_library",
    "isolated_qsettings",
    "library",
    "make_window",
    "music_dir",
    "session_data_dir",
]

# (file name, seconds, seed, tags): two artists, three albums, several codecs, one broken file.
TRACKS = [
    ("alpha/01 Morning.mp3", 3.0, 1, {"title": "Morning", "artist": "Ada", "album": "Alpha",
                                      "genre": "Jazz"}),
    ("alpha/02 Noon.flac", 3.0, 2, {"title": "Noon", "artist": "Ada", "album": "Alpha",
                                    "genre": "Jazz"}),
    ("alpha/03 Evening.ogg", 3.0, 3, {"title": "Evening", "artist": "Ada", "album": "Alpha",
                                      "genre": "Jazz"}),
    ("beta/01 Rain.m4a", 3.0, 4, {"title": "Rain", "artist": "Ben", "album": "Beta",
                                  "genre": "Rock"}),
    ("beta/02 Storm.opus", 3.0, 5, {"title": "Storm", "artist": "Ben", "album": "Beta",
                                    "genre": "Rock"}),
    ("beta/03 Calm.wav", 3.0, 6, {"title": "Calm", "artist": "Ben", "album": "Beta"}),
    ("gamma/01 Copy of Morning.flac", 3.0, 1, {"title": "Morning (copy)", "artist": "Ada",
                                               "album": "Gamma"}),
    ("gamma/02 Dusk.mp3", 3.0, 7, {"title": "Dusk", "artist": "Cleo", "album": "Gamma",
                                   "genre": "Ambient"}),
]  # fmt: skip
N_TRACKS = len(TRACKS)
BROKEN = "gamma/03 Broken.mp3"


def make_music(folder: Path, tracks=TRACKS, broken: bool = True) -> Path:  # noqa: ANN001
    for name, seconds, seed, tags in tracks:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_audio(path, seconds=seconds, seed=seed, tags=tags)
    if broken:
        (folder / BROKEN).write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x10" + b"\x00garbage" * 200)
    return folder


@pytest.fixture(scope="session")
def music_dir(tmp_path_factory) -> Path:
    return make_music(tmp_path_factory.mktemp("music"))


@pytest.fixture(scope="session")
def session_data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("session-data")


@pytest.fixture(scope="session")
def analysed_template(music_dir, session_data_dir, tmp_path_factory) -> Path:
    """A library DB with the music scanned and analysed once per session (copied per test)."""
    path = tmp_path_factory.mktemp("template") / "lib.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MUSICSSL_DATA_DIR", str(session_data_dir))
        mp.delenv("MUSICSSL_DB", raising=False)
        lib = Library(path)
        lib.scan([music_dir])
        report = lib.analyze()
        assert report.analyzed >= N_TRACKS, report.summary()
        lib.close()
    return path


def _settle() -> None:
    """Free what earlier tests left for later: closed widgets awaiting deleteLater, signals
    still queued from worker threads, reference cycles. Without this, a window of the previous
    test freed during the next one dropped thousands of references to None/True/False inside
    that test, and the guard below failed whichever test came after a window test."""
    import gc

    from PySide6.QtCore import QCoreApplication, QEvent

    for _ in range(3):  # deleting a widget can post more deferred deletes (its children's)
        if QCoreApplication.instance() is not None:
            QCoreApplication.processEvents()
            QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        gc.collect()


@pytest.fixture(autouse=True)
def bool_refcount_guard():
    """No test may lose references to None/True/False: PySide6 6.12.0 did, on every signal emit
    and overridden virtual call, until CPython < 3.12 freed a singleton and aborted (that
    version is excluded in pyproject.toml; this catches a regression in a future one).
    Set up first and torn down last (autouse), so both counts are taken with the windows of
    this and earlier tests closed and freed."""
    import sys

    singletons = (None, True, False)
    _settle()
    before = [sys.getrefcount(o) for o in singletons]
    yield
    _close_windows()
    _settle()
    after = [sys.getrefcount(o) for o in singletons]
    lost = [b - a for b, a in zip(before, after, strict=True)]
    assert max(lost) < 1000, f"references lost during the test (None, True, False): {lost}"


@pytest.fixture(autouse=True)
def isolated_qsettings(tmp_path, monkeypatch):
    """Any QSettings built from organisation/app names lands in this test's temp folder."""
    folder = str(tmp_path / "qsettings")
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
            QSettings.setPath(fmt, scope, folder)
    monkeypatch.setenv("XDG_CONFIG_HOME", folder)
    yield folder


@pytest.fixture
def app_settings(tmp_path) -> AppSettings:
    return AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


class FakeDialogs(Dialogs):
    """Canned answers to the questions the window asks; records errors and infos."""

    def __init__(self) -> None:
        self.texts: list[str | None] = []
        self.save_answers: list[tuple[str, str]] = []
        self.open_answers: list[str] = []
        self.folder_answers: list[str] = []
        self.confirm_answer = True
        self.questions: list[str] = []
        self.errors: list[str] = []
        self.infos: list[str] = []

    def folder(self, parent, title, start=""):  # noqa: ANN001, ANN201
        return self.folder_answers.pop(0) if self.folder_answers else ""

    def open_files(self, parent, title, filters, start=""):  # noqa: ANN001, ANN201
        return list(self.open_answers)

    def open_file(self, parent, title, filters, start=""):  # noqa: ANN001, ANN201
        return self.open_answers.pop(0) if self.open_answers else ""

    def save_file(self, parent, title, start, filters):  # noqa: ANN001, ANN201
        return self.save_answers.pop(0) if self.save_answers else ("", "")

    def ask_text(self, parent, title, label, text=""):  # noqa: ANN001, ANN201
        if self.texts:
            return self.texts.pop(0)
        return text or None

    def confirm(self, parent, title, text):  # noqa: ANN001, ANN201
        self.questions.append(text)
        return self.confirm_answer

    def error(self, parent, title, text):  # noqa: ANN001, ANN201
        self.errors.append(text)

    def info(self, parent, title, text):  # noqa: ANN001, ANN201
        self.infos.append(text)


class FakeSoundDevice:
    """Stands in for the `sounddevice` module: a stream that pulls blocks on a thread, faster
    than real time, and honours start/stop/abort and CallbackStop like PortAudio does."""

    class CallbackStop(Exception):  # noqa: N818 - the name sounddevice uses
        pass

    def __init__(self, speed: float = 8.0) -> None:
        self.speed = speed
        self.streams: list[FakeSoundDevice.OutputStreamImpl] = []

    def query_devices(self, kind=None):  # noqa: ANN001, ANN201
        return {"name": "fake output", "default_samplerate": 44100.0}

    def OutputStream(self, **kwargs):  # noqa: N802, ANN003, ANN201 - module API
        stream = FakeSoundDevice.OutputStreamImpl(self, **kwargs)
        self.streams.append(stream)
        return stream

    class OutputStreamImpl:
        BLOCK = 1024

        def __init__(self, owner, samplerate, channels, dtype, callback, finished_callback):  # noqa: ANN001, PLR0913
            self.owner = owner
            self.rate = samplerate
            self.callback = callback
            self.finished_callback = finished_callback
            self.active = threading.Event()
            self.closed = threading.Event()
            self.in_callback = threading.Lock()  # PortAudio's stop waits for the running one
            self.frames = 0
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

        def _run(self) -> None:
            out = np.zeros((self.BLOCK, 1), np.float32)
            while not self.closed.is_set():
                if not self.active.wait(0.01):
                    continue
                with self.in_callback:
                    if not self.active.is_set():
                        continue
                    try:
                        self.callback(out, self.BLOCK, None, None)
                        self.frames += self.BLOCK
                    except FakeSoundDevice.CallbackStop:
                        self.active.clear()
                        self.closed.set()
                        self.finished_callback()
                        return
                time.sleep(self.BLOCK / self.rate / self.owner.speed)

        def start(self) -> None:
            self.active.set()

        def stop(self) -> None:
            self.active.clear()
            with self.in_callback:
                pass

        def abort(self) -> None:
            self.stop()

        def close(self) -> None:
            self.closed.set()


# Windows built in the running test: closed before its library is (fixture teardown order
# would otherwise close the DB under a window whose timers still fire).
_OPEN_WINDOWS: list = []


def _close_windows() -> None:
    while _OPEN_WINDOWS:
        window = _OPEN_WINDOWS.pop()
        window.close()
        window.deleteLater()


@pytest.fixture
def library(analysed_template, tmp_path) -> Library:
    """A fresh copy of the analysed library for this test."""
    path = tmp_path / "lib.db"
    shutil.copy(analysed_template, path)
    lib = Library(path)
    yield lib
    _close_windows()
    lib.close()


@pytest.fixture
def empty_library(tmp_path) -> Library:
    lib = Library(tmp_path / "empty.db")
    yield lib
    _close_windows()
    lib.close()


@pytest.fixture
def make_window(qtbot, app_settings):
    """Build a MainWindow on a library with fake dialogs and a fake sound card."""
    from musicssl.app.window import MainWindow

    def build(lib: Library, player: Player | None = None, settings: AppSettings | None = None):
        sd = FakeSoundDevice()
        window = MainWindow(
            lib,
            settings or app_settings,
            FakeDialogs(),
            player if player is not None else Player(sounddevice=sd),
        )
        window.fake_sd = sd
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        window.activateWindow()
        qtbot.waitUntil(window.isActiveWindow, timeout=3000)
        # The row count comes from the page-loader thread: tests start from the real one.
        qtbot.waitUntil(lambda: window.track_model.exact, timeout=10000)
        _OPEN_WINDOWS.append(window)
        return window

    yield build
    _close_windows()


def wait_jobs_idle(qtbot, window, timeout: int = 60000) -> None:  # noqa: ANN001
    qtbot.waitUntil(lambda: not window.jobs.busy(), timeout=timeout)


def find_action(menu, text: str):  # noqa: ANN001, ANN201
    """An action by its text in a menu or its submenus."""
    for action in menu.actions():
        if action.text() == text:
            return action
        sub = action.menu()
        if sub is not None:
            found = find_action(sub, text)
            if found is not None:
                return found
    raise LookupError(f"no action {text!r} in {[a.text() for a in menu.actions()]}")


def wait_tag(qtbot, window, tag: str, timeout: int = 10000) -> None:  # noqa: ANN001
    """Tag lists load on the query thread: wait until the sidebar lists this tag."""
    qtbot.waitUntil(lambda: window.sidebar.find("tag", tag) is not None, timeout=timeout)
