"""Helpers shared by the reliability tests: the real CLI in a subprocess, file hashes, long audio.

The CLI runs as `python -m musicssl.engine.cli` with this interpreter, so a test exercises exactly
what a user runs, in its own process (its own imports, its own SQLite connections, killable).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

CLI = [sys.executable, "-m", "musicssl.engine.cli"]


def cli(
    db: Path, *args: str | os.PathLike[str], timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run `musicssl --db DB ARGS...` to completion; output is captured as text."""
    return subprocess.run(
        [*CLI, "--db", str(db), *map(os.fspath, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def integrity(db: Path) -> tuple[str, list]:
    """(`PRAGMA integrity_check`, `PRAGMA foreign_key_check` rows) of a library file, read as a
    fresh process would after a crash: opening it replays or discards the WAL."""
    with sqlite3.connect(db) as conn:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        orphans = conn.execute("PRAGMA foreign_key_check").fetchall()
    conn.close()
    return check, orphans


def sha256_tree(root: Path) -> dict[str, str]:
    """sha256 of every regular file under `root` (symlinks not followed), by relative path."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
            out[os.path.relpath(path, root)] = digest.hexdigest()
    return out


def silent_mp3(path: Path, seconds: float) -> Path:
    """A CBR MP3 of `seconds` of silence (8 kHz mono, 8 kbit/s: 36 MB for 10 hours), written in
    a fraction of a second by repeating one encoded silent frame instead of encoding hours."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=8000)
        stream.layout = "mono"
        stream.bit_rate = 8000
        stream.codec_context.open(strict=False)
        size = stream.codec_context.frame_size
        dtype = {"s16p": np.int16, "s32p": np.int32, "fltp": np.float32}[stream.format.name]
        for i in range(40):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, size), dtype), format=stream.format.name, layout="mono"
            )
            frame.sample_rate, frame.pts = 8000, i * size
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    data = buf.getvalue()
    syncs = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] & 0xE0 == 0xE0]
    frame_bytes = data[syncs[10] : syncs[11]]  # a steady-state frame, past the LAME info frame
    count = int(seconds * 8000 / size) + 1
    path.write_bytes(frame_bytes * count)
    return path


def run_as(uid: int, work: Callable[[], dict]) -> dict:
    """`work()`'s JSON-able result, computed in a forked child running as `uid`.

    Why: these tests run as root, who reads every file, so unreadable folders and files can only
    be exercised by a process that dropped to an ordinary user (e.g. nobody, 65534).
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        status = 1
        try:
            os.close(read_end)
            if os.getuid() != uid:
                os.setgid(uid)
                os.setuid(uid)
            payload = work()
            status = 0
        except BaseException:
            payload = {"traceback": traceback.format_exc()}
        with os.fdopen(write_end, "w") as out:
            json.dump(payload, out)
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    result = json.loads(data) if data else {"traceback": f"child died with status {status}"}
    assert "traceback" not in result, result["traceback"]
    return result
