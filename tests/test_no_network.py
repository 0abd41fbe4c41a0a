"""MusicSSL never touches the network: scan, analyse, find similar and start the app offline.

The run happens in a fresh interpreter whose first act is an audit hook that makes every
Internet socket operation raise (creating an AF_INET/AF_INET6 socket, connect, name lookups,
urllib requests) and records the attempt, so a library that swallowed the error is still
caught. At the end the child also lists its open sockets from /proc and fails on any Internet
socket, which covers C code (Qt, FFmpeg, ONNX Runtime) that bypasses Python's socket module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

CHILD = textwrap.dedent(
    """
    import socket, sys

    attempts = []
    INET = {int(socket.AF_INET), int(socket.AF_INET6)}
    BLOCKED = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
               "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg", "urllib.Request"}

    def no_network(event, args):
        if event == "socket.__new__" and len(args) > 1 and int(args[1]) in INET:
            attempts.append((event, repr(args[1:])))
            raise OSError("network access attempted (blocked by test_no_network)")
        if event in BLOCKED:
            attempts.append((event, repr(args[1:] if event.startswith("socket.") else args)))
            raise OSError("network access attempted (blocked by test_no_network)")

    sys.addaudithook(no_network)

    import json, os, shutil
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    work = Path(sys.argv[1])
    from audio_fixtures import write_audio
    music = work / "music"
    music.mkdir()
    for i in range(4):
        write_audio(music / f"{i}.mp3", seconds=2.0, seed=i, tags={"title": f"T{i}"})

    from musicssl.engine.library import Library
    db = work / "lib.db"
    with Library(db) as lib:
        lib.scan([music])
        report = lib.analyze()
        assert report.analyzed == 4, report.summary()
        assert len(lib.similar([1], n=3)) == 3

    # The real app entry point: window, rescan and analysis jobs, then quit after a moment.
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication
    app = QApplication(["musicssl"])
    QTimer.singleShot(0, lambda: QTimer.singleShot(2500, app.quit))  # 2.5 s after exec() starts
    from musicssl.app.main import main
    status = main(["--db", str(db)])
    windows = [w for w in app.topLevelWidgets() if type(w).__name__ == "MainWindow"]

    def inet_sockets():
        inodes = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        found = []
        for table in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
            try:
                lines = Path(f"/proc/self/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            found += [(table, l.split()[9]) for l in lines if l.split()[9] in inodes]
        return found

    print(json.dumps({"status": status, "windows": len(windows), "attempts": attempts,
                      "inet_sockets": inet_sockets()}))
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc to find open sockets")
def test_scan_analyse_similar_and_app_start_without_network(tmp_path):
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        MUSICSSL_DATA_DIR=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),  # the app's QSettings: never the user's
    )
    env.pop("MUSICSSL_DB", None)
    (tmp_path / "work").mkdir()
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "work"), str(TESTS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["status"] == 0 and result["windows"] == 1
    assert result["attempts"] == [], result["attempts"]
    assert result["inet_sockets"] == [], result["inet_sockets"]


def test_the_guard_itself_catches_a_connection(tmp_path):
    """The hook and the /proc check are live: a deliberate connection attempt is recorded."""
    probe = CHILD.split("import json, os, shutil")[0] + textwrap.dedent(
        """
        import json
        try:
            socket.create_connection(("127.0.0.1", 9), timeout=1)
        except OSError:
            pass
        print(json.dumps(attempts))
        """
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    events = [event for event, _ in json.loads(run.stdout)]
    assert events and set(events) <= {"socket.getaddrinfo", "socket.__new__", "socket.connect"}
