"""The one-folder app built by PyInstaller runs: its self-test passes and its GUI starts.

Opt-in, because building takes many minutes (see packaging/README.md for the figures):

    MUSICSSL_TEST_PACKAGING=1 .venv/bin/python -m pytest tests/test_packaging.py -m packaging

It tests dist/musicssl/ when it exists (`make package` built it), else builds it first;
MUSICSSL_TEST_PACKAGING_REBUILD=1 forces a fresh build.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from audio_fixtures import write_audio

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.skipif(
        os.environ.get("MUSICSSL_TEST_PACKAGING") != "1",
        reason="builds the packaged app: set MUSICSSL_TEST_PACKAGING=1 to run",
    ),
]

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist" / "musicssl"
TRACK_FORMATS = (".mp3", ".flac", ".ogg")
ANALYSIS_TIMEOUT = 180  # seconds: the worker's first start imports torch on a busy machine


@pytest.fixture(scope="module")
def app() -> Path:
    binary = DIST / "musicssl"
    if not binary.exists() or os.environ.get("MUSICSSL_TEST_PACKAGING_REBUILD") == "1":
        subprocess.run(["bash", str(ROOT / "packaging" / "build.sh")], cwd=ROOT, check=True)
    return binary


def _app_env(tmp_path: Path) -> dict[str, str]:
    """A user with nothing set up: own home, data and config folders; no dev venv on any path."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MUSICSSL_DB")
    }
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        MUSICSSL_DATA_DIR=str(tmp_path / "data"),
        QT_QPA_PLATFORM="offscreen",
    )
    return env


def test_the_built_app_passes_its_self_test(app, tmp_path):
    result = subprocess.run(
        [str(app), "--self-test"],
        capture_output=True,
        text=True,
        timeout=600,
        env=_app_env(tmp_path),
        cwd=tmp_path,  # nothing from the source tree can be picked up by accident
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "self-test (frozen app" in result.stdout, report
    assert "RESULT: PASS" in result.stdout, report


def test_the_built_app_starts_its_gui_and_analyses_in_its_worker(app, tmp_path):
    """The real start-up path: a bundled platform plugin, the event loop, the start-up rescan,
    and analysis in the app's worker process (the frozen binary started again with `-m`)."""
    music = tmp_path / "music"
    music.mkdir()
    for i, ext in enumerate(TRACK_FORMATS):  # real codecs through the bundled FFmpeg
        write_audio(music / f"{i:02d}{ext}", seconds=3.0, seed=i)
    db = tmp_path / "library.db"
    env = _app_env(tmp_path)
    scan = [str(app), "scan", str(music), "--db", str(db)]
    subprocess.run(scan, check=True, env=env, cwd=tmp_path, capture_output=True, timeout=300)
    process = subprocess.Popen(
        [str(app), "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        analysed = _wait_for_analysis(db, len(TRACK_FORMATS), process)
        running = process.poll() is None
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert running, f"the app exited with {process.returncode}:\n{output}"
    assert analysed == len(TRACK_FORMATS), output
    assert "Traceback" not in output, output


def _wait_for_analysis(db: Path, expected: int, process: subprocess.Popen[str]) -> int:
    """Analysed tracks, polled in the DB (a reader never blocks the app's writer in WAL mode)."""
    deadline = time.monotonic() + ANALYSIS_TIMEOUT
    analysed = 0
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
            sql = "SELECT count(*) FROM tracks WHERE status = 'analyzed'"
            analysed = conn.execute(sql).fetchone()[0]
        if analysed >= expected:
            break
        time.sleep(1)
    return analysed


def test_the_folder_holds_cpu_torch_qt_plugins_and_resources(app):
    internal = app.parent / "_internal"
    assert (internal / "musicssl" / "resources" / "icons" / "musicssl.svg").is_file()
    for plugin in ("platforms/libqoffscreen.so", "platforms/libqxcb.so", "imageformats/libqsvg.so"):
        assert list(internal.rglob(plugin)), f"Qt plugin {plugin} is not bundled"
    assert not list(internal.rglob("libtorch_cuda*")), "a CUDA torch was bundled"
    assert not list(internal.rglob("libcudart*")), "CUDA runtime libraries were bundled"
    assert (internal / "torch" / "bin" / "torch_shm_manager").is_file(), "`import torch` needs it"
    assert not (internal / "torch" / "test").exists(), "torch's C++ tests were bundled"
    assert not list(internal.glob("libgtk-3*")), "the GTK theme plugin's libraries were bundled"
    for unused in ("matplotlib", "sklearn", "scipy", "musicssl/training"):
        assert not (internal / unused).exists(), f"{unused} is bundled but the app never uses it"
    assert (app.parent / "musicssl.desktop").is_file()
    assert (app.parent / "musicssl.png").is_file()
