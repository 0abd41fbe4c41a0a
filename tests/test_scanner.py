"""The scanner against real folders of real audio files and a real SQLite library."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import mutagen.id3
import pytest
from audio_fixtures import write_audio
from musicssl.engine import db as dbmod
from musicssl.engine import scanner
from mutagen.id3 import APIC, ID3, TALB, TCON, TIT2, TPE1
from reliability_tools import run_as


@pytest.fixture(scope="module")
def mp3_audio(tmp_path_factory) -> bytes:
    """The audio frames of one short real MP3, without a tag: copies get their own."""
    path = write_audio(tmp_path_factory.mktemp("template") / "t.mp3", seconds=0.5, seed=3)
    raw = io.BytesIO(path.read_bytes())
    mutagen.id3.delete(raw)
    return raw.getvalue()


@pytest.fixture(scope="module")
def flac_bytes(tmp_path_factory) -> bytes:
    path = write_audio(
        tmp_path_factory.mktemp("template") / "t.flac",
        seconds=0.5,
        tags={"title": "Flac Sóng", "artist": "F", "genre": "Ambient/Drone", "date": "2011"},
    )
    return path.read_bytes()


def make_mp3(audio: bytes, path: Path, title: str, genres=("Rock", "Pop"), **extra) -> Path:
    tags = ID3()
    tags.add(TIT2(encoding=3, text=title))
    tags.add(TPE1(encoding=3, text=extra.get("artist", "Some Artist")))
    tags.add(TALB(encoding=3, text=extra.get("album", "Some Album")))
    if genres:
        tags.add(TCON(encoding=3, text=list(genres)))
    if "cover" in extra:
        tags.add(APIC(encoding=3, mime="image/jpeg", type=3, desc="Cover", data=extra["cover"]))
    out = io.BytesIO(audio)
    tags.save(out, padding=lambda info: 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())
    return path


def rows(db, sql="SELECT * FROM tracks ORDER BY path", params=()):
    return list(db.query(sql, params))


def track(db, path):
    found = rows(db, "SELECT * FROM tracks WHERE path = ?", [str(path)])
    assert found, f"no row for {path}"
    return found[0]


def tags_of(db, track_id, source=None):
    sql = "SELECT tag, source, score FROM tags WHERE track_id = ?"
    params = [track_id]
    if source:
        sql += " AND source = ?"
        params.append(source)
    return sorted((r["tag"], r["source"], r["score"]) for r in db.query(sql, params))


@pytest.fixture
def library(tmp_path, mp3_audio, flac_bytes):
    """music/ with 3 tagged MP3s, a FLAC, a playlist, non-audio files, a trash folder and an
    AppleDouble file (neither of which is a track)."""
    music = tmp_path / "music"
    make_mp3(mp3_audio, music / "A" / "one.mp3", "Öne", genres=["Rock; Pop"])
    make_mp3(mp3_audio, music / "A" / "two.mp3", "Two", genres=["Jazz"])
    make_mp3(mp3_audio, music / "B" / "deep" / "three.mp3", "Three", genres=None)
    (music / "B" / "four.flac").write_bytes(flac_bytes)
    (music / "A" / "cover.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (music / "notes.txt").write_text("liner notes")
    (music / "B" / "mix.m3u8").write_text("#EXTM3U\ndeep/three.mp3\n")
    make_mp3(mp3_audio, music / ".Trash-1000" / "files" / "deleted.mp3", "Deleted")
    (music / "A" / "._one.mp3").write_bytes(b"\x00\x05\x16\x07 AppleDouble junk")
    return music


def test_first_scan_adds_tracks_file_tags_and_the_folder(db, library):
    progress = []
    report = scanner.scan(db, [library], progress=lambda *a: progress.append(a))
    assert (report.added, report.updated, report.unchanged, report.missing) == (4, 0, 0, 0)
    assert report.errors == []
    assert report.playlist_files == [str(library / "B" / "mix.m3u8")]
    assert "4 added" in report.summary()

    paths = [r["path"] for r in rows(db)]
    assert paths == sorted(
        str(library / p) for p in ("A/one.mp3", "A/two.mp3", "B/deep/three.mp3", "B/four.flac")
    )
    one = track(db, library / "A" / "one.mp3")
    assert (one["title"], one["artist"], one["album"]) == ("Öne", "Some Artist", "Some Album")
    assert (one["status"], one["missing"], one["duration_decoded"]) == ("new", 0, 0)
    assert (one["codec"], one["sample_rate"], one["channels"]) == ("mp3", 44100, 2)
    assert one["duration"] == pytest.approx(0.5, abs=0.1)
    assert one["size"] == (library / "A" / "one.mp3").stat().st_size
    assert one["genre"] == "Rock; Pop"
    assert tags_of(db, one["id"]) == [("Pop", "file", 1.0), ("Rock", "file", 1.0)]
    three = track(db, library / "B" / "deep" / "three.mp3")
    assert three["genre"] is None and tags_of(db, three["id"]) == []
    four = track(db, library / "B" / "four.flac")
    assert (four["title"], four["year"], four["codec"]) == ("Flac Sóng", 2011, "flac")
    assert tags_of(db, four["id"]) == [("Ambient", "file", 1.0), ("Drone", "file", 1.0)]

    folder = rows(db, "SELECT * FROM library_folders")
    assert [f["path"] for f in folder] == [str(library)]
    assert folder[0]["last_scan_at"] is not None
    # progress: the walk reports with total None, then every file with the total
    assert progress[-1][:2] == (4, 4)


def test_rescan_of_unchanged_files_opens_none_of_them(db, library, monkeypatch):
    scanner.scan(db, [library])
    before = rows(db)

    def must_not_read(path):
        raise AssertionError(f"unchanged file was opened: {path}")

    monkeypatch.setattr(scanner, "read_metadata", must_not_read)
    report = scanner.scan(db, [library])
    assert (report.added, report.updated, report.unchanged, report.missing) == (0, 0, 4, 0)
    assert report.errors == []
    assert rows(db) == before  # not even updated_at moved


def test_modified_file_is_reread_and_queued_for_analysis(db, library, mp3_audio):
    scanner.scan(db, [library])
    path = library / "A" / "one.mp3"
    row = track(db, path)
    with dbmod.transaction(db) as conn:
        conn.execute("UPDATE tracks SET status = 'analyzed', duration_decoded = 1")
        conn.execute("INSERT INTO tags VALUES (?, 'favourite', 'user', 1.0)", [row["id"]])
        conn.execute("INSERT INTO tags VALUES (?, 'rock', 'auto', 0.9)", [row["id"]])

    make_mp3(mp3_audio, path, "Öne (Remaster)", genres=["Metal", "metal", "Doom"], artist="New")
    os.utime(path, (row["mtime"] + 10, row["mtime"] + 10))
    report = scanner.scan(db, [library])
    assert (report.added, report.updated, report.unchanged) == (0, 1, 3)

    after = track(db, path)
    assert after["id"] == row["id"]
    assert after["title"] == "Öne (Remaster)"
    assert (after["artist"], after["genre"]) == ("New", "Metal; Doom")
    assert (after["status"], after["duration_decoded"]) == ("new", 0)
    assert after["mtime"] == row["mtime"] + 10
    assert tags_of(db, row["id"]) == [
        ("Doom", "file", 1.0),
        ("Metal", "file", 1.0),
        ("favourite", "user", 1.0),
        ("rock", "auto", 0.9),
    ]
    # the other files were left alone
    assert track(db, library / "A" / "two.mp3")["status"] == "analyzed"


def test_deleted_file_is_marked_missing_keeping_user_tags_and_comes_back(db, library):
    scanner.scan(db, [library])
    path = library / "A" / "two.mp3"
    row = track(db, path)
    with dbmod.transaction(db) as conn:
        conn.execute("INSERT INTO tags VALUES (?, 'late night', 'user', 1.0)", [row["id"]])
    saved = path.read_bytes()
    path.unlink()

    report = scanner.scan(db, [library])
    assert (report.missing, report.unchanged, report.restored) == (1, 3, 0)
    gone = track(db, path)
    assert gone["missing"] == 1 and gone["id"] == row["id"]
    assert ("late night", "user", 1.0) in tags_of(db, row["id"])
    assert ("Jazz", "file", 1.0) in tags_of(db, row["id"])

    again = scanner.scan(db, [library])  # still gone: not counted twice
    assert again.missing == 0 and track(db, path)["missing"] == 1

    path.write_bytes(saved)
    os.utime(path, (row["mtime"], row["mtime"]))
    back = scanner.scan(db, [library])
    assert (back.restored, back.updated, back.added, back.unchanged) == (1, 0, 0, 4)
    assert track(db, path)["missing"] == 0
    assert ("late night", "user", 1.0) in tags_of(db, row["id"])


def test_missing_file_that_returns_changed_is_reread(db, library, mp3_audio):
    scanner.scan(db, [library])
    path = library / "A" / "two.mp3"
    path.unlink()
    scanner.scan(db, [library])
    make_mp3(mp3_audio, path, "Two v2", genres=["Blues"])
    report = scanner.scan(db, [library])
    assert (report.restored, report.updated) == (1, 1)
    row = track(db, path)
    assert (row["missing"], row["title"], row["genre"]) == (0, "Two v2", "Blues")


def test_bad_files_become_error_rows_while_good_files_scan(db, library, mp3_audio):
    bad = library / "bad"
    bad.mkdir()
    (bad / "empty.mp3").write_bytes(b"")
    (bad / "random.mp3").write_bytes(os.urandom(30000))
    good = make_mp3(mp3_audio, library / "tmp.mp3", "x")
    (bad / "truncated.mp3").write_bytes(good.read_bytes()[:200])
    good.unlink()
    (bad / "text.mp3").write_text("definitely not audio\n" * 50)
    (bad / "random.wma").write_bytes(os.urandom(5000))

    report = scanner.scan(db, [library])
    assert report.added == 4  # the good ones; each bad file counts once, in errors
    errors = dict(report.errors)
    assert errors[str(bad / "empty.mp3")] == "empty file (0 bytes)"
    for name in ("random.mp3", "truncated.mp3", "text.mp3", "random.wma"):
        message = errors[str(bad / name)]
        assert message.startswith("not a readable audio file (mutagen: "), message
        assert "; ffmpeg: " in message
    assert len(errors) == 5
    error_rows = rows(db, "SELECT * FROM tracks WHERE status = 'error' ORDER BY path")
    assert [r["path"] for r in error_rows] == sorted(errors)
    assert all(r["error"] == errors[r["path"]] for r in error_rows)
    assert all(tags_of(db, r["id"]) == [] for r in error_rows)
    assert rows(db, "SELECT count(*) AS n FROM tracks WHERE status = 'new'")[0]["n"] == 4

    # unchanged broken files are not re-read (nor re-reported) on a rescan
    again = scanner.scan(db, [library])
    assert (again.unchanged, again.updated, again.errors) == (9, 0, [])

    # a broken file that gets fixed is picked up because its size/mtime changed
    make_mp3(mp3_audio, bad / "empty.mp3", "Fixed", genres=["Soul"])
    fixed = scanner.scan(db, [library])
    assert fixed.updated == 1
    row = track(db, bad / "empty.mp3")
    assert (row["status"], row["error"], row["title"]) == ("new", None, "Fixed")
    assert tags_of(db, row["id"]) == [("Soul", "file", 1.0)]


def test_file_with_cover_art_scans(db, tmp_path, mp3_audio):
    cover = bytes(range(256)) * 800  # 200 KB picture in an APIC frame
    path = make_mp3(mp3_audio, tmp_path / "m" / "cover.mp3", "Covered", cover=cover)
    assert ID3(path).getall("APIC")[0].data == cover
    report = scanner.scan(db, [tmp_path / "m"])
    assert (report.added, report.errors) == (1, [])
    row = track(db, path)
    assert (row["title"], row["status"], row["codec"]) == ("Covered", "new", "mp3")


def test_symlink_loops_terminate_and_are_reported(db, tmp_path, mp3_audio):
    music = tmp_path / "music"
    make_mp3(mp3_audio, music / "a" / "song.mp3", "Song")
    (music / "a" / "back_to_top").symlink_to(music, target_is_directory=True)
    (music / "a" / "itself").symlink_to(music / "a" / "itself")
    report = scanner.scan(db, [music])
    assert report.added == 1
    assert [r["path"] for r in rows(db)] == [str(music / "a" / "song.mp3")]
    errors = dict(report.errors)
    assert "symlink loop" in errors[str(music / "a" / "back_to_top")]
    assert "symlink loop" in errors[str(music / "a" / "itself")]
    recorded = {r["path"]: r["error"] for r in rows(db, "SELECT * FROM scan_errors")}
    assert recorded == errors


def test_linked_folders_are_followed_and_broken_links_reported(db, tmp_path, mp3_audio):
    outside = tmp_path / "elsewhere"
    make_mp3(mp3_audio, outside / "linked.mp3", "Linked")
    music = tmp_path / "music"
    music.mkdir()
    (music / "link").symlink_to(outside, target_is_directory=True)
    (music / "gone.mp3").symlink_to(tmp_path / "nowhere" / "gone.mp3")
    report = scanner.scan(db, [music])
    assert report.added == 1
    assert track(db, music / "link" / "linked.mp3")["title"] == "Linked"  # path not resolved
    message = dict(report.errors)[str(music / "gone.mp3")]
    assert message.startswith("broken symlink")
    assert rows(db, "SELECT path FROM scan_errors") == [{"path": str(music / "gone.mp3")}]

    # fixed problems leave scan_errors on the next scan
    (music / "gone.mp3").unlink()
    scanner.scan(db, [music])
    assert rows(db, "SELECT path FROM scan_errors") == []


def test_non_utf8_file_name_gets_a_clear_error_row(db, tmp_path, mp3_audio):
    music = tmp_path / "music"
    good = make_mp3(mp3_audio, music / "fine.mp3", "Fine")
    bad_name = os.path.join(os.fsencode(music), b"caf\xe9.mp3")
    try:
        with open(bad_name, "wb") as f:
            f.write(good.read_bytes())
    except OSError as exc:  # a filesystem that enforces UTF-8 names
        pytest.skip(f"cannot create a non-UTF-8 file name here: {exc}")
    report = scanner.scan(db, [music])
    assert report.added == 1
    shown = str(music) + "/caf\\xe9.mp3"
    assert dict(report.errors) == {shown: "file name is not valid UTF-8 — rename it"}
    row = track(db, shown)
    assert (row["status"], row["error"]) == ("error", "file name is not valid UTF-8 — rename it")
    assert track(db, good)["status"] == "new"
    again = scanner.scan(db, [music])
    assert (again.unchanged, again.added, again.missing) == (2, 0, 0)


def test_cancel_stops_between_files_and_marks_nothing_missing(db, library, monkeypatch):
    scanner.scan(db, [library])
    (library / "A" / "two.mp3").unlink()
    for i in range(5):
        (library / f"new{i}.flac").write_bytes((library / "B" / "four.flac").read_bytes())
    monkeypatch.setattr(scanner, "BATCH", 2)
    seen = []
    report = scanner.scan(db, [library], progress=lambda d, t, p: t and seen.append(d),
                          cancel=lambda: len(seen) >= 3)  # fmt: skip
    assert report.cancelled and report.summary().startswith("cancelled")
    assert report.missing == 0
    assert track(db, library / "A" / "two.mp3")["missing"] == 0
    assert report.added + report.unchanged == 3  # three files handled, the rest left
    assert rows(db, "SELECT count(*) AS n FROM tracks")[0]["n"] == 4 + report.added


def test_batches_are_committed_while_the_scan_runs(db, tmp_path, mp3_audio, monkeypatch):
    music = tmp_path / "music"
    for i in range(7):
        make_mp3(mp3_audio, music / f"{i}.mp3", f"n{i}")
    monkeypatch.setattr(scanner, "BATCH", 2)
    other = sqlite3.connect(tmp_path / "library.db")  # what the GUI would see meanwhile
    committed = {}

    def progress(done, total, path):
        if total:
            committed[done] = other.execute("SELECT count(*) FROM tracks").fetchone()[0]

    scanner.scan(db, [music], progress=progress)
    other.close()
    assert committed[1] == 0 and committed[3] == 2 and committed[5] == 4 and committed[7] == 6


def test_single_files_missing_paths_and_playlists(db, tmp_path, mp3_audio):
    song = make_mp3(mp3_audio, tmp_path / "loose" / "single.mp3", "Single")
    playlist = tmp_path / "loose" / "list.m3u"
    playlist.write_text(str(song) + "\n")
    report = scanner.scan(db, [song, playlist, tmp_path / "no_such_folder"])
    assert report.added == 1
    assert report.playlist_files == [str(playlist)]
    assert dict(report.errors) == {str(tmp_path / "no_such_folder"): "not found"}
    assert rows(db, "SELECT * FROM library_folders") == []  # single files add no folder
    song.unlink()
    report = scanner.scan(db, [song])
    assert report.missing == 1 and track(db, song)["missing"] == 1


def test_nested_roots_are_walked_once(db, library):
    report = scanner.scan(db, [library / "A", library, str(library) + "/"])
    assert report.added == 4 and report.errors == []
    assert [r["path"] for r in rows(db, "SELECT * FROM library_folders ORDER BY path")] == [
        str(library),
        str(library / "A"),
    ]


# -- unreadable folders: root reads everything, so the scan runs as "nobody" in a child ------


def _scan_as(uid: int, db_path: str, root: str) -> dict:
    """Run a scan in a forked child under `uid`; return its report as a dict."""

    def scan() -> dict:
        child_db = dbmod.connect(db_path)
        report = scanner.scan(child_db, [root])
        child_db.conn.close()
        return {"errors": report.errors, "added": report.added,
                "unchanged": report.unchanged, "missing": report.missing}  # fmt: skip

    return run_as(uid, scan)


def test_unreadable_folder_and_file_are_reported_and_fixed_later(mp3_audio):
    nobody = 65534
    as_root = os.getuid() == 0
    work = Path(tempfile.mkdtemp(prefix="musicssl-perm-"))
    try:
        music = work / "music"
        make_mp3(mp3_audio, music / "open" / "ok.mp3", "Ok")
        locked = music / "locked"
        make_mp3(mp3_audio, locked / "hidden.mp3", "Hidden")
        db_path = work / "library.db"
        first = dbmod.connect(db_path)
        assert scanner.scan(first, [music]).added == 2
        first.conn.close()
        make_mp3(mp3_audio, music / "open" / "later.mp3", "Later")
        secret = make_mp3(mp3_audio, music / "open" / "secret.mp3", "Secret")
        if as_root:
            for folder, _, files in os.walk(work):
                os.chown(folder, nobody, nobody)
                for name in files:
                    os.chown(os.path.join(folder, name), nobody, nobody)
        locked.chmod(0)
        secret.chmod(0)
        try:
            result = _scan_as(nobody if as_root else os.getuid(), str(db_path), str(music))
        finally:
            locked.chmod(0o755)
            secret.chmod(0o644)
        assert result["added"] == 1 and result["unchanged"] == 1 and result["missing"] == 0
        assert result["errors"] == [
            [str(locked), "cannot read folder: permission denied"],
            [str(secret), "cannot read the file: Permission denied"],
        ]
        check = dbmod.connect(db_path)
        assert [r["path"] for r in rows(check, "SELECT path FROM scan_errors")] == [str(locked)]
        assert track(check, locked / "hidden.mp3")["missing"] == 0  # unknown, not gone
        assert track(check, secret)["status"] == "error"

        # permissions fixed (size and mtime unchanged): both are picked up by the next scan
        report = scanner.scan(check, [music])
        assert (report.updated, report.unchanged, report.errors) == (1, 3, [])
        assert (track(check, secret)["status"], track(check, secret)["title"]) == ("new", "Secret")
        assert rows(check, "SELECT path FROM scan_errors") == []
        check.conn.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
