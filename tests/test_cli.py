"""The headless CLI end to end on real encoded files and a real library file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from audio_fixtures import write_audio
from musicssl.engine.cli import main


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    root = tmp_path_factory.mktemp("music")
    album = root / "Sunny Album"
    album.mkdir()
    for i, ext in enumerate([".mp3", ".flac", ".ogg"]):
        write_audio(
            album / f"{i + 1:02d} song{ext}",
            seconds=2.0,
            seed=i,
            tags={
                "title": f"Song {i + 1}",
                "artist": "Ädele" if i else "Bach",
                "album": "Sunny",
                "genre": "Rock; Pop",
                "date": "2001",
                "track": str(i + 1),
            },
        )
    (album / "broken.flac").write_bytes(os.urandom(4096))
    (album / "mix.m3u8").write_text("#EXTM3U\n03 song.ogg\n01 song.mp3\n", encoding="utf-8")
    return root


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr().out
    return code, out


def test_scan_status_tracks_playlists(music, tmp_path, capsys):
    db = tmp_path / "lib.db"
    code, out = run(capsys, "scan", music, "--db", db)
    assert code == 0
    assert "3 added" in out or "added 3" in out, out

    code, out = run(capsys, "--db", db, "status", "--json")
    status = json.loads(out)
    assert (status["tracks"], status["errors"], status["playlists"]) == (4, 1, 1)

    code, out = run(capsys, "tracks", "--db", db, "--where", "artist=bach", "--json")
    assert [r["title"] for r in json.loads(out)] == ["Song 1"]
    code, out = run(capsys, "tracks", "--db", db, "--where", "tag=pop", "--sort", "title", "--json")
    assert [r["title"] for r in json.loads(out)] == ["Song 1", "Song 2", "Song 3"]

    code, out = run(capsys, "errors", "--db", db)
    assert "broken.flac" in out

    # The .m3u8 found in the folder became a playlist, in its order.
    code, out = run(capsys, "playlist", "show", "mix", "--db", db, "--json")
    assert [r["title"] for r in json.loads(out)] == ["Song 3", "Song 1"]

    song2 = music / "Sunny Album" / "02 song.flac"
    code, out = run(capsys, "playlist", "create", "Trip", "--db", db)
    assert code == 0
    assert run(capsys, "playlist", "add", "Trip", song2, "1", "--db", db)[0] == 0
    dest = tmp_path / "out" / "trip.xspf"
    dest.parent.mkdir()
    assert run(capsys, "playlist", "export", "Trip", dest, "--db", db)[0] == 0
    assert "02%20song.flac" in dest.read_text(encoding="utf-8")

    code, out = run(
        capsys, "playlist", "import", dest, "--name", "Trip again", "--db", db, "--json"
    )
    assert json.loads(out)["matched"] == 2
    code, out = run(capsys, "playlist", "show", "Trip again", "--db", db, "--json")
    assert [r["title"] for r in json.loads(out)] == ["Song 2", "Song 1"]


def test_rescan_is_incremental(music, tmp_path, capsys):
    db = tmp_path / "lib.db"
    run(capsys, "scan", music, "--db", db)
    code, out = run(capsys, "scan", music, "--db", db, "--json")
    report = json.loads(out)
    assert report["added"] == 0 and report["updated"] == 0 and report["unchanged"] >= 3


def test_folders_remove_asks_first_and_never_touches_files(music, tmp_path, capsys):
    db = tmp_path / "lib.db"
    run(capsys, "scan", music, "--db", db)
    code, out = run(capsys, "folders", "list", "--db", db, "--json")
    assert json.loads(out) == [str(music)]
    files = sorted(p.name for p in (music / "Sunny Album").iterdir())
    code, out = run(capsys, "folders", "remove", music, "--db", db)
    assert code == 1 and "would remove 4 tracks, 1 imported playlist" in out
    code, out = run(capsys, "--db", db, "status", "--json")
    assert json.loads(out)["tracks"] >= 3  # nothing removed without --yes
    code, out = run(capsys, "folders", "remove", music, "--db", db, "--yes")
    assert code == 0 and "removed 4 tracks" in out
    code, out = run(capsys, "tracks", "--db", db, "--json")
    assert json.loads(out) == []
    assert sorted(p.name for p in (music / "Sunny Album").iterdir()) == files
    assert main(["folders", "remove", str(tmp_path / "elsewhere"), "--db", str(db)]) == 2
    assert "is not a library folder" in capsys.readouterr().err


def test_bad_input_gives_a_clear_error_not_a_traceback(tmp_path, capsys):
    db = tmp_path / "lib.db"
    assert main(["tracks", "--db", str(db), "--where", "year>abc"]) == 2
    assert "year is a number" in capsys.readouterr().err
    assert main(["playlist", "show", "nope", "--db", str(db)]) == 2
    assert "no playlist named 'nope'" in capsys.readouterr().err


def test_console_script_and_env_db(music, tmp_path):
    """The installed `musicssl` entry point works, and MUSICSSL_DB picks the library."""
    exe = shutil.which("musicssl") or os.path.join(os.path.dirname(sys.executable), "musicssl")
    env = {**os.environ, "MUSICSSL_DB": str(tmp_path / "env.db")}
    done = subprocess.run([exe, "scan", str(music)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([exe, "status", "--json"], env=env, capture_output=True, text=True)
    assert json.loads(done.stdout)["database"] == str(tmp_path / "env.db")
