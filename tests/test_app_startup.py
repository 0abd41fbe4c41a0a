"""The app starts without torch: the window, its first page of rows, the model registry.

Why it matters: torch's import was 3.6 s of the GUI's 4.9 s start (docs/BENCHMARKS.md, Scale);
analysis runs in a child process (engine/analysis_process.py), so the GUI process never needs it.
Checked in a fresh interpreter, since this test session has imported torch long ago.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from conftest_app import *  # noqa: F403 - the fixtures
from conftest_app import N_TRACKS

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    app = QApplication(["musicssl-test"])
    from musicssl.app.settings import AppSettings
    from musicssl.app.window import MainWindow
    from musicssl.engine.library import Library

    lib = Library(sys.argv[1])
    window = MainWindow(lib, AppSettings(QSettings(sys.argv[2], QSettings.Format.IniFormat)))
    window.show()
    model = window.track_model
    deadline = time.monotonic() + 60
    while not (model.exact and model.rowCount() and model.data(model.index(0, 0)) != "…"):
        app.processEvents()
        time.sleep(0.01)
        assert time.monotonic() < deadline, "no rows"
    print(json.dumps({
        "rows": model.rowCount(),
        "models": [m.name for m in window.lib.models()],
        "torch": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")),
    }))
    window.close()
    lib.close()
    """
)


def test_window_and_first_page_do_not_import_torch(library, session_data_dir, tmp_path):
    env = dict(
        os.environ,
        MUSICSSL_DATA_DIR=str(session_data_dir),  # the analysed library's baseline model
        QT_QPA_PLATFORM="offscreen",
    )
    env.pop("MUSICSSL_DB", None)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(library.path), str(tmp_path / "settings.ini")],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == N_TRACKS + 1
    assert result["models"]  # the registry was listed, still without torch
    assert result["torch"] == []


def test_architecture_names_match_the_encoder_registry():
    from musicssl.engine.architectures import ARCHITECTURE_NAMES
    from musicssl.engine.encoders import ARCHITECTURES

    assert set(ARCHITECTURES) == ARCHITECTURE_NAMES
