"""Nothing lost to kill -9: the real CLI is killed at random points of scan, analysis, index save
and load, and schema migration; after every kill the library must pass SQLite's integrity check,
keep the user's tags and playlists, keep the index consistent with the embeddings (or rebuild it on
the next query), and a re-run must resume and complete.

Scans are killed at random times (they commit every 500 files). Analysis, index and migration
kills must land inside short critical sections whatever the machine's speed, so those processes
run the CLI under a tracer that SIGKILLs itself on a random line of the named function.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from audio_fixtures import write_audio
from musicssl.engine import db as dbmod
from musicssl.engine import embeddings
from musicssl.engine.index import open_index
from musicssl.engine.library import Library
from reliability_tools import CLI, cli, integrity

SEED_TRACKS = 48  # three analysis commits of 16
BULK_FILES = 1200  # three scan batches of 500
SCAN_KILLS = 17

# Runs the CLI; on line LINE of the CALL-th call of FUNC (in a file ending FILE) it SIGKILLs itself,
# or with ACTION "pause" says so on stderr and waits until its stdin is closed.
_STOP_AT = r"""
import os, signal, sys
func, filename, call_no, line_no, action = sys.argv[1:6]
state = {"calls": 0, "lines": 0}

def local(frame, event, arg):
    if event == "line":
        state["lines"] += 1
        if state["lines"] == int(line_no):
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            print("paused", file=sys.stderr, flush=True)
            sys.stdin.read()
    return local

def trace(frame, event, arg):
    code = frame.f_code
    if code.co_name == func and code.co_filename.endswith(filename):
        state["calls"] += 1
        if state["calls"] == int(call_no):
            return local
    return None

sys.settrace(trace)
from musicssl.engine.cli import main
sys.exit(main(sys.argv[6:]))
"""


def _stopping(func: str, filename: str, call: int, line: int, action: str, *argv: str) -> list:
    return [sys.executable, "-c", _STOP_AT, func, filename, str(call), str(line), action, *argv]


def _kill_inside(func: str, filename: str, call: int, line: int, *argv: str) -> int:
    """Run `musicssl ARGV` until line `line` of call `call` of `func`; exit code -9 if killed."""
    cmd = _stopping(func, filename, call, line, "kill", *argv)
    return subprocess.run(cmd, capture_output=True, timeout=180, check=False).returncode


def _kill_after(seconds: float, *argv: str) -> tuple[int, float]:
    """Run `musicssl ARGV`, SIGKILL it after `seconds`: (exit code, -9 if killed; run time)."""
    started = time.monotonic()
    proc = subprocess.Popen([*CLI, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    return proc.wait(60), time.monotonic() - started


def _touch_all(folder: Path, stamp: float) -> None:
    """New mtimes: the next scan must read and write every file again, so a kill lands in work."""
    for path in folder.iterdir():
        os.utime(path, (stamp, stamp))


def _user_state(db_path: Path) -> tuple[list, list]:
    """What the user made by hand: their tags (yes and no) and their playlists in order."""
    with sqlite3.connect(db_path) as conn:
        tags = conn.execute(
            "SELECT t.path, g.tag, g.score FROM tags g JOIN tracks t ON t.id = g.track_id "
            "WHERE g.source = 'user' ORDER BY 1, 2"
        ).fetchall()
        lists = conn.execute(
            "SELECT p.name, p.source_path, i.position, t.path FROM playlists p "
            "LEFT JOIN playlist_items i ON i.playlist_id = p.id "
            "LEFT JOIN tracks t ON t.id = i.track_id ORDER BY p.name, i.position"
        ).fetchall()
    conn.close()
    return tags, lists


def _counts(db_path: Path) -> dict[str, int]:
    with sqlite3.connect(db_path) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        counts = {
            "tracks": one("SELECT count(*) FROM tracks"),
            "analyzed": one("SELECT count(*) FROM tracks WHERE status = 'analyzed'"),
            "embeddings": one("SELECT count(*) FROM embeddings"),
            # analysis writes status and vector in one transaction: never one without the other
            "analyzed_without_vector": one(
                "SELECT count(*) FROM tracks WHERE status = 'analyzed' "
                "AND id NOT IN (SELECT track_id FROM embeddings)"
            ),
        }
    conn.close()
    return counts


def _assert_sound(db_path: Path, user: tuple[list, list]) -> dict[str, int]:
    assert integrity(db_path) == ("ok", [])
    assert _user_state(db_path) == user
    counts = _counts(db_path)
    assert counts["analyzed_without_vector"] == 0
    return counts


def _assert_index_matches_embeddings(db_path: Path) -> None:
    """The index a fresh process opens (loaded, or rebuilt if stale) holds exactly the vectors."""
    db = dbmod.connect(db_path)
    try:
        # the only model here (not yet published for queries: the job died in its final save)
        (model_id,) = [r[0] for r in db.execute("SELECT DISTINCT model_id FROM embeddings")]
        ids = np.concatenate([i for i, _ in embeddings.iter_all(db, model_id)])
        vectors = embeddings.get(db, model_id, ids.tolist())
        index = open_index(db, model_id)
        assert index.count == len(ids)
        labels, _ = index.query(vectors, k=len(ids))
        assert set(labels.ravel().tolist()) == set(ids.tolist())
    finally:
        db.conn.close()


def _scratch_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("musicssl-index-"))


def _make_library(root: Path) -> tuple[Path, Path]:
    seed = root / "music" / "seed"
    seed.mkdir(parents=True)
    exts = [".mp3", ".flac", ".ogg", ".wav"]
    for i in range(SEED_TRACKS):
        write_audio(seed / f"{i:02d}{exts[i % 4]}", 1.0, i, {"title": f"Seed {i}", "genre": "Jazz"})
    (seed / "mix.m3u8").write_text("#EXTM3U\n03.wav\n00.mp3\n02.ogg\n", encoding="utf-8")
    bulk = root / "music" / "bulk"
    bulk.mkdir()
    template = write_audio(root / "template.mp3", 0.3, 99, {"artist": "Bulk"}).read_bytes()
    for i in range(BULK_FILES):
        (bulk / f"b{i:04d}.mp3").write_bytes(template)
    return seed, bulk


def _user_edits(db_path: Path, seed: Path) -> None:
    with Library(db_path) as lib:
        ids = [lib.resolve(str(seed / f"{i:02d}{['.mp3', '.flac', '.ogg', '.wav'][i % 4]}"))
               for i in range(6)]  # fmt: skip
        lib.set_user_tag(ids[0], "dinner")
        lib.set_user_tag(ids[1], "dinner", positive=False)
        lib.set_user_tag(ids[2], "späť 🎷")
        lib.create_playlist("Favourites", [ids[4], ids[1], ids[5], ids[1]])
        lib.create_playlist("Empty")


def test_kill_9_anywhere_loses_nothing_and_a_rerun_completes():
    rng = random.Random(2026)
    root = Path(tempfile.mkdtemp(prefix="musicssl-kill-"))
    try:
        seed, bulk = _make_library(root)
        db_path = root / "library.db"
        db = ["--db", str(db_path)]
        assert cli(db_path, "scan", seed).returncode == 0
        _user_edits(db_path, seed)
        user = _user_state(db_path)
        assert len(user[0]) == 3 and len(user[1]) == 4 + 1 + 3  # Favourites, Empty, mix
        kills = 0

        # -- scan: killed at random times; committed batches are never lost ------------------
        before = _assert_sound(db_path, user)["tracks"]
        latest = 2.0  # kill times are drawn below this; a run that finishes first lowers it
        for attempt in range(3 * SCAN_KILLS):  # a run that ends before its kill is not counted
            _touch_all(bulk, 1_700_000_000 + attempt)
            code, took = _kill_after(rng.uniform(0.2, latest), *db, "scan", str(root / "music"))
            if code == -signal.SIGKILL:
                kills += 1
            else:
                latest = 0.9 * took
            now = _assert_sound(db_path, user)["tracks"]
            assert now >= before
            before = now
            if kills == SCAN_KILLS:
                break
        assert cli(db_path, "scan", root / "music").returncode == 0
        assert _assert_sound(db_path, user)["tracks"] == SEED_TRACKS + BULK_FILES

        # keep analysis small: the bulk copies go away (marked missing, never deleted)
        shutil.rmtree(bulk)
        assert cli(db_path, "scan", root / "music").returncode == 0

        # -- analysis: killed inside its 2nd commit, then inside its final index save ---------
        # batches of 8 one-excerpt tracks: commits of exactly 16 tracks (~420 traced lines; the
        # first 120 stay clear of a refactoring that shortens them)
        analyze = [*db, "analyze", "--batch-size", "8"]
        assert _kill_inside("_commit", "analysis.py", 2, rng.randint(1, 120), *analyze) == -9
        kills += 1
        assert _assert_sound(db_path, user)["analyzed"] == 16  # the first commit, complete
        assert _kill_inside("save", "index.py", 2, rng.randint(1, 30), *analyze) == -9
        kills += 1
        counts = _assert_sound(db_path, user)
        assert counts["analyzed"] == counts["embeddings"] == SEED_TRACKS  # resumed, completed
        assert cli(db_path, *analyze[2:]).returncode == 0  # nothing left; publishes the model

        # -- queries: the stale index is rebuilt; a kill while loading it leaves no litter -----
        first = str(seed / "00.mp3")
        assert cli(db_path, "similar", first, "-n", "5").returncode == 0  # rebuilt and saved
        earlier = _scratch_leftovers(root)  # the killed save's, if it died after making one
        assert _kill_inside("_copy_chunks", "index.py", 1, 1, *db, "similar", first) == -9
        kills += 1
        leftovers = _scratch_leftovers(root)
        assert len(leftovers) == len(earlier) + 1  # the killed load's temporary index file
        hours_ago = time.time() - 7200  # young ones are kept: see index._scratch
        for name in leftovers:
            os.utime(root / name, (hours_ago, hours_ago))
        result = cli(db_path, "similar", first, "-n", "47", "--json")
        assert result.returncode == 0, result.stderr
        assert len(json.loads(result.stdout)) == SEED_TRACKS - 1
        assert _scratch_leftovers(root) == []  # removed by the next process that needed one
        _assert_sound(db_path, user)
        _assert_index_matches_embeddings(db_path)
        assert kills >= 20, kills
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- schema migrations: a backup first, and a kill mid-migration loses nothing ----------------


def _v1_library(path: Path) -> None:
    old = dbmod.connect(path, migrate_to=1)
    with dbmod.transaction(old) as conn:
        conn.execute(
            "INSERT INTO tracks (path, status, added_at, updated_at) "
            "VALUES ('/m/a.mp3', 'new', 0, 0)"
        )
        conn.execute("INSERT INTO tags (track_id, tag, source) VALUES (1, 'mine', 'user')")
        conn.execute("INSERT INTO playlists (name, created_at, updated_at) VALUES ('P', 0, 0)")
        conn.execute("INSERT INTO playlist_items VALUES (1, 0, 1)")
    old.conn.close()


def _user_rows(path: Path) -> list:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT t.path, g.tag, p.name FROM tracks t JOIN tags g ON g.track_id = t.id "
            "JOIN playlist_items i ON i.track_id = t.id JOIN playlists p ON p.id = i.playlist_id"
        ).fetchall()
    conn.close()
    return rows


@pytest.mark.parametrize("func, line", [("_backup", 5), ("migrate", 10), ("migrate", 12)])
def test_kill_during_migration_keeps_the_library_and_a_backup(tmp_path, func, line):
    path = tmp_path / "library.db"
    _v1_library(path)
    assert _kill_inside(func, "db.py", 1, line, "--db", str(path), "status") == -9
    assert integrity(path) == ("ok", [])
    assert _user_rows(path) == [("/m/a.mp3", "mine", "P")]
    assert cli(path, "status").returncode == 0  # opens and finishes the migration
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == dbmod.SCHEMA_VERSION
    conn.close()
    assert _user_rows(path) == [("/m/a.mp3", "mine", "P")]
    backups = list(tmp_path.glob("library.db.v1-*.bak"))
    assert len(backups) >= 1
    for backup in backups:  # only complete copies carry the .bak name
        assert integrity(backup) == ("ok", [])
        assert _user_rows(backup) == [("/m/a.mp3", "mine", "P")]
        with sqlite3.connect(backup) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        conn.close()


def test_a_failing_migration_rolls_back_and_keeps_the_backup(tmp_path, monkeypatch):
    """A migration that errors (here: a broken step after the last) leaves the file at its old
    version."""
    path = tmp_path / "library.db"
    dbmod.connect(path).conn.close()
    broken = dbmod._script("CREATE TABLE extra (x); CREATE TABLE tracks (y)")
    monkeypatch.setattr(dbmod, "MIGRATIONS", [*dbmod.MIGRATIONS, broken])
    with pytest.raises(dbmod.DatabaseError, match="already exists"):
        dbmod.connect(path, migrate_to=len(dbmod.MIGRATIONS))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == dbmod.SCHEMA_VERSION
        assert "extra" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert len(list(tmp_path.glob(f"library.db.v{dbmod.SCHEMA_VERSION}-*.bak"))) == 1


def test_two_processes_migrating_one_old_library_both_succeed(tmp_path):
    """The GUI and a CLI started together on an old library: one migrates, the other, having
    read the old version before the first took the lock, must not run the migration again."""
    path = tmp_path / "library.db"
    _v1_library(path)
    first = subprocess.Popen(
        _stopping("migrate", "db.py", 1, 2, "pause", "--db", str(path), "status"),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert first.stderr.readline().strip() == "paused"  # it has read user_version = 1
        assert cli(path, "status").returncode == 0  # the second process migrates to v2
        first.stdin.close()
        assert first.wait(60) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
    assert _user_rows(path) == [("/m/a.mp3", "mine", "P")]
