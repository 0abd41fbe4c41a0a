"""The user's files are never written: every byte (sha256) and every mtime of the music folder is
the same after scanning, analysing, tag edits, playlist import/export and a fine-tuning run.

Every step is the real thing: the CLI in subprocesses, the Library facade the GUI uses for tag
edits, and `musicssl-train finetune` on the library with a tiny network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from audio_fixtures import FORMATS, write_audio
from musicssl.engine.library import Library
from mutagen.id3 import APIC, ID3
from reliability_tools import cli, sha256_tree

TINY_MODEL = [
    "--set", "model.sample_rate=8000",
    "--set", "model.embedding_dim=16",
    "--set", "model.excerpt_samples=8000",
    "--set", "model.arch_params={channels = [8, 16, 32], n_mels = 32, n_fft = 256, hop_length = 128}",  # noqa: E501
    "--set", "ssl_params={projection_dim = 16}",
]  # fmt: skip


def _music(root: Path) -> Path:
    """Every format, tagged, with cover art, a misnamed file, playlists and non-audio files."""
    music = root / "My Music"
    album = music / "Album ünï"
    album.mkdir(parents=True)
    for i, ext in enumerate(FORMATS):
        tags = {"title": f"Song {i}", "artist": f"Artist {i % 3}", "album": f"Album {i % 4}",
                "genre": ["Rock; Pop", "Jazz"][i % 2], "track": str(i + 1)}  # fmt: skip
        write_audio(album / f"{i + 1:02d} song{ext}", 2.0, i, tags)
    cover = ID3(album / "01 song.mp3")
    cover.add(APIC(encoding=3, mime="image/jpeg", type=3, desc="Cover", data=b"\xff\xd8" * 5000))
    cover.save()
    (album / "really flac.mp3").write_bytes((album / "02 song.flac").read_bytes())
    (album / "mix.m3u8").write_text("#EXTM3U\n03 song.ogg\n01 song.mp3\n", encoding="utf-8")
    (album / "old.pls").write_text("[playlist]\nFile1=04 song.opus\nNumberOfEntries=1\n")
    (album / "cover.jpg").write_bytes(b"\xff\xd8\xff" + os.urandom(2000))
    (album / "notes.txt").write_text("liner notes\n")
    return music


def _state(music: Path) -> dict[str, tuple[str, int]]:
    """(sha256, mtime in ns) of every file."""
    hashes = sha256_tree(music)
    return {rel: (digest, os.stat(music / rel).st_mtime_ns) for rel, digest in hashes.items()}


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _edit_tags(db: Path, album: Path) -> None:
    """What the GUI does when a user tags tracks: yes, an explicit no, and a removal."""
    with Library(db) as lib:
        ids = [lib.resolve(str(album / f"{i + 1:02d} song{ext}")) for i, ext in enumerate(FORMATS)]
        for track_id in ids:
            lib.set_user_tag(track_id, "dinner", positive=track_id % 2 == 0)
        lib.set_user_tag(ids[0], "temporary")
        lib.remove_user_tag(ids[0], "temporary")


def _finetune(db: Path, out: Path) -> None:
    cmd = [sys.executable, "-m", "musicssl.training.cli", "finetune", "--library", str(db),
           "--out", str(out / "run"), "--cache", str(out / "cache"), "--device", "cpu",
           "--no-progress", "--ratio", "1.0", "--steps", "2", "--batch-size", "4",
           "--eval-every", "1", *TINY_MODEL]  # fmt: skip
    _ok(subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False))
    assert (out / "run" / "best.pt").is_file()


def test_scan_analyze_tags_playlists_and_training_change_no_byte(tmp_path):
    music = _music(tmp_path)
    album = music / "Album ünï"
    db = tmp_path / "library.db"
    before = _state(music)

    _ok(cli(db, "scan", music))
    _ok(cli(db, "analyze"))
    _edit_tags(db, album)
    _ok(cli(db, "playlist", "create", "Evening", album / "02 song.flac", album / "05 song.m4a"))
    _ok(cli(db, "playlist", "add", "Evening", album / "really flac.mp3"))
    _ok(cli(db, "playlist", "import", album / "mix.m3u8", "--name", "Imported"))
    exported = [tmp_path / f"evening.{fmt}" for fmt in ("m3u8", "m3u", "xspf", "pls")]
    _ok(cli(db, "playlist", "export", "Evening", exported[0]))
    with Library(db) as lib:  # the GUI's way, for the other formats
        for dest in exported[1:]:
            lib.export_playlist("Evening", dest)
    inside = album / "exported here.xspf"  # a new file next to the music: nothing else changes
    _ok(cli(db, "playlist", "export", "Evening", inside, "--absolute"))
    _finetune(db, tmp_path)
    _ok(cli(db, "scan", music))  # a rescan after all that

    after = _state(music)
    assert set(after) - set(before) == {os.path.relpath(inside, music)}
    changed = [rel for rel in before if after.get(rel) != before[rel]]
    assert changed == []
    assert all(p.stat().st_size > 0 for p in exported)
    with Library(db) as lib:
        assert lib.status()["analyzed"] == len(FORMATS) + 1
        # the rescan found the exported XSPF in the music folder and imported it too
        names = sorted(p["name"] for p in lib.playlists())
        assert names == ["Evening", "Evening", "Imported", "old"]


def test_a_drive_gone_during_analysis_loses_no_track(tmp_path):
    """Files that vanish while analysis runs (an unplugged drive) fail as "cannot read"; when
    they are back, the next scan queues them again instead of leaving them marked broken."""
    drive = tmp_path / "usb"
    drive.mkdir()
    for i, ext in enumerate([".mp3", ".flac", ".ogg"]):
        write_audio(drive / f"{i}{ext}", 1.0, i)
    with Library(tmp_path / "library.db") as lib:
        lib.scan([drive])
        drive.rename(tmp_path / "unplugged")
        report = lib.analyze()
        assert report.failed == 3
        assert all("cannot read the file" in message for _, message in report.errors)
        (tmp_path / "unplugged").rename(drive)
        lib.scan([drive])  # size and mtime unchanged: only the error says to read them again
        assert lib.status()["new"] == 3
        assert lib.analyze().analyzed == 3
        assert lib.status()["analyzed"] == 3
