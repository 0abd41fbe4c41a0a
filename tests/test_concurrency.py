"""Several readers and writers on one library at once: the GUI reading and editing tags while an
analysis writes, another process editing the same library, and a second app instance.

Real SQLite files in WAL mode, real threads and processes, the real analysis job and the real
main window offscreen. What is checked is what a user would notice: reads that disagree with
themselves, a "database is locked" error, a tag edit that is lost or freezes the window.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from audio_fixtures import write_audio
from conftest_app import *  # noqa: F403 - the fixtures (isolated QSettings, make_window)
from conftest_app import wait_jobs_idle
from musicssl.app.instance_lock import InstanceLock, LibraryInUseError
from musicssl.app.jobs import AnalysisRunJob
from musicssl.engine.analysis import AnalysisJob, AnalysisOptions
from musicssl.engine.bundle import build_model, default_config, save_bundle
from musicssl.engine.library import Library
from musicssl.engine.models import user_models_dir

ROOT = Path(__file__).resolve().parent.parent
TRACKS = 20
# A tag edit waits at most for the writer's current transaction (one commit of a few tracks);
# the 10 s busy timeout is what a user would feel as a freeze. Generous for a loaded CI box.
MAX_EDIT_S = 2.0

# One statement is one snapshot: analysed tracks, those among them lacking an embedding (must be
# 0: status and vector are committed together), and stored embeddings.
SNAPSHOT_SQL = """
SELECT (SELECT count(*) FROM tracks WHERE status = 'analyzed'),
       (SELECT count(*) FROM tracks t WHERE t.status = 'analyzed' AND NOT EXISTS
           (SELECT 1 FROM embeddings e WHERE e.track_id = t.id AND e.model_id = :m)),
       (SELECT count(*) FROM embeddings WHERE model_id = :m)
"""


@pytest.fixture(scope="module")
def scanned_template(tmp_path_factory) -> Path:
    """A scanned, not yet analysed library of TRACKS short files (8 recordings, copied)."""
    root = tmp_path_factory.mktemp("concurrency")
    music = root / "music"
    sources = [write_audio(root / f"src{i}.mp3", seconds=2.0, seed=i) for i in range(8)]
    for i in range(TRACKS):
        dest = music / f"album{i % 4}" / f"{i:02d}.mp3"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sources[i % len(sources)], dest)
    path = root / "template.db"
    with Library(path) as lib:
        lib.scan([music])
        assert lib.count() == TRACKS
    return path


@pytest.fixture
def scanned_db(scanned_template, tmp_path) -> Path:
    path = tmp_path / "lib.db"
    shutil.copyfile(scanned_template, path)
    return path


def install_tagger(lib: Library) -> str:
    """A 'trained' bundle (thresholds 0: every tag is written as an auto tag); returns its id."""
    config = default_config("tagger", "melcnn", tags=["calm", "loud"], thresholds=[0.0, 0.0],
                            trained=True)  # fmt: skip
    save_bundle(build_model(config), config, user_models_dir() / "tagger")
    return lib.use_model("tagger").model_id


# A second process that edits user tags on every track for as long as the analysis runs:
# positive "fav" everywhere, the user's explicit "no" for "loud" on even ids. It pauses 10 ms
# between edits (still ~50 edits a second, far faster than anyone clicks): SQLite's busy handler
# polls, it does not queue, so a writer that never lets go of the lock starves every other writer
# past the busy timeout. That is SQLite's contract, not a bug the product could fix.
TAG_EDITOR = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from musicssl.engine.library import Library
    db, stop = sys.argv[1], Path(sys.argv[2])
    lib = Library(db)
    # Like the window's own connection: a tag edit never runs a WAL checkpoint (an fsync).
    lib.db.execute("PRAGMA wal_autocheckpoint = 0")
    ids = [r["id"] for r in lib.tracks(order_by="id")]
    worst, edits, rounds = 0.0, 0, 0
    while not stop.exists() or rounds < 1:
        for track_id in ids:
            t = time.perf_counter()
            lib.set_user_tag(track_id, "fav", True)
            if track_id % 2 == 0:
                lib.set_user_tag(track_id, "loud", False)
            worst = max(worst, time.perf_counter() - t)
            edits += 1
            time.sleep(0.01)
        rounds += 1
    print(json.dumps({"worst_s": worst, "edits": edits, "rounds": rounds}))
    """
)


def test_reads_and_tag_edits_during_analysis(scanned_db, tmp_path):
    """Analysis on a thread (its own connection, as in the app), a tag editor in another
    process, and this thread reading: every snapshot consistent, no edit lost or slow."""
    reader = Library(scanned_db)
    model_id = install_tagger(reader)
    stop = tmp_path / "stop"
    editor = subprocess.Popen(
        [sys.executable, "-c", TAG_EDITOR, str(scanned_db), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reports: list = []
    job = AnalysisJob(scanned_db, AnalysisOptions(commit_every=1, batch_size=8))
    worker = threading.Thread(target=lambda: reports.append(job.run()), name="analysis")
    worker.start()
    seen: list[int] = []
    try:
        while worker.is_alive():
            analysed, without_vector, vectors = reader.db.execute(
                SNAPSHOT_SQL, {"m": model_id}
            ).fetchone()
            assert without_vector == 0 and analysed == vectors, (analysed, without_vector)
            assert not seen or analysed >= seen[-1]
            seen.append(analysed)
            # What the window's pages, counts and sidebar ask for, all through the facade.
            assert len(reader.tracks(order_by="title", limit=50)) == min(50, TRACKS)
            assert reader.count(["status=analyzed"]) >= analysed
            reader.status()
            reader.tag_counts()
    finally:
        worker.join(120)
        stop.touch()
        out, err = editor.communicate(timeout=120)
    assert editor.returncode == 0, err
    edits = json.loads(out)
    [report] = reports
    assert report.analyzed == TRACKS and report.failed == 0
    assert len(set(seen)) >= 3, f"reads did not overlap the analysis: {sorted(set(seen))}"
    assert edits["worst_s"] < MAX_EDIT_S, edits

    # Nothing lost on either side: the user's tags and the model's auto tags coexist.
    rows = reader.db.execute("SELECT track_id, tag, source, score FROM tags").fetchall()
    user = {(t, tag, score) for t, tag, source, score in rows if source == "user"}
    auto = {(t, tag) for t, tag, source, _ in rows if source == "auto"}
    ids = [r["id"] for r in reader.tracks(order_by="id")]
    assert user == {(t, "fav", 1.0) for t in ids} | {(t, "loud", 0.0) for t in ids if t % 2 == 0}
    assert auto == {(t, tag) for t in ids for tag in ("calm", "loud")}
    assert reader.count(["tag=fav"]) == TRACKS
    reader.close()


def test_window_stays_usable_while_analysing(qtbot, make_window, scanned_db):
    """The real window offscreen: browse, filter, sort and tag while an analysis commits."""
    lib = Library(scanned_db)
    window = make_window(lib)
    messages: list[str] = []
    window.statusBar().messageChanged.connect(messages.append)
    model = window.track_model
    edits: list[float] = []
    job = window.jobs.submit(AnalysisRunJob(AnalysisOptions(commit_every=1, batch_size=8)))
    with qtbot.waitSignal(window.analysis_finished, timeout=120_000) as finished:
        rounds = 0
        while window.jobs.current is job or job in window.jobs.pending() or rounds < 3:
            rounds += 1
            model.refresh()
            model.sort(rounds % 3, model_order(rounds))
            model.set_search("" if rounds % 2 else "album1")
            for row in range(min(20, model.rowCount())):
                model.data(model.index(row, 0))
            ids = [model.track_id(r) for r in range(min(3, model.rowCount()))]
            started = time.perf_counter()
            window.edit_tag(ids, f"round{rounds % 4}", True)
            edits.append(time.perf_counter() - started)
            qtbot.wait(20)
    assert finished.args[0].analyzed == TRACKS
    model.set_search("")
    wait_jobs_idle(qtbot, window)
    assert window.dialogs.errors == []
    assert not [m for m in messages if "locked" in m.lower() or m.startswith("Error")], messages
    assert max(edits) < MAX_EDIT_S, f"slowest tag edit on the GUI thread: {max(edits):.2f} s"
    tagged = lib.db.execute("SELECT count(*) FROM tags WHERE source = 'user'").fetchone()[0]
    assert tagged >= 3
    assert lib.count(["status=analyzed"]) == TRACKS


def model_order(i: int):  # noqa: ANN201 - a Qt enum
    from PySide6.QtCore import Qt

    return Qt.SortOrder.DescendingOrder if i % 2 else Qt.SortOrder.AscendingOrder


# ------------------------------------------------------------------------------ two instances
APP = textwrap.dedent(
    """
    import sys
    from musicssl.app.main import main
    sys.exit(main(["--db", sys.argv[1], "--no-rescan"]))
    """
)

# The second instance: the same entry point, plus a timer that reads the message box it shows
# and presses OK (or, if it opened a window instead, quits after 30 s so the test fails).
SECOND_APP = textwrap.dedent(
    """
    import sys, time
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication
    from musicssl.app.main import main
    app = QApplication(["musicssl"])
    deadline = time.monotonic() + 30

    def poll():
        box = QApplication.activeModalWidget()
        if box is not None:
            print("BOX:" + box.text().replace("\\n", " "), flush=True)
            box.accept()
        elif time.monotonic() > deadline:
            QApplication.quit()

    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(50)
    sys.exit(main(["--db", sys.argv[1], "--no-rescan"]))
    """
)


def test_second_app_instance_is_refused_while_the_cli_still_works(scanned_db, tmp_path):
    """Two real app processes on one library: the second says who has it and exits."""
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        MUSICSSL_DATA_DIR=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),  # the app's QSettings: never the user's
    )
    first = subprocess.Popen([sys.executable, "-c", APP, str(scanned_db)], env=env)
    lock_file = Path(f"{scanned_db}.lock")
    try:
        deadline = time.monotonic() + 60
        while not lock_file.exists():
            assert first.poll() is None, "the first app instance exited"
            assert time.monotonic() < deadline, "the first app instance never took the lock"
            time.sleep(0.1)

        second = subprocess.run(
            [sys.executable, "-c", SECOND_APP, str(scanned_db)],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert second.returncode == 1, second.stderr[-3000:]
        boxes = [line for line in second.stdout.splitlines() if line.startswith("BOX:")]
        assert len(boxes) == 1 and "already open" in boxes[0], second.stdout
        assert f"process {first.pid}" in boxes[0], boxes[0]
        assert first.poll() is None  # the first window is unaffected

        # The headless CLI is not locked out: SQLite's own locking keeps it safe.
        cli = subprocess.run(
            [sys.executable, "-m", "musicssl.engine.cli", "--db", str(scanned_db), "tracks",
             "--json", "--limit", "3"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert cli.returncode == 0 and len(json.loads(cli.stdout)) == 3, cli.stderr
    finally:
        first.send_signal(signal.SIGKILL)  # a crash: the lock file stays behind
        first.wait(30)

    # The crashed holder's lock is stale (its PID is gone) and is taken over.
    assert lock_file.exists()
    with InstanceLock(scanned_db) as lock:
        assert lock.path == lock_file
        with pytest.raises(LibraryInUseError, match="already open"):
            InstanceLock(scanned_db).acquire()  # held by this process now
    assert not lock_file.exists()
