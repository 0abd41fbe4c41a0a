"""Bad input, measured: a library of broken, odd and hostile files goes through the real CLI.

The corpus is generated here: truncated files of every format, random bytes under every audio
extension, 0-byte files, files with huge or malformed tags, a 10-hour file, misnamed files,
unreadable files and folders, broken symlinks, a FIFO, names with line breaks and invalid UTF-8.
Scan and analysis must finish; every bad file must end up as an error row a person can read;
every good file must be analysed. Each expectation below was checked against what the files are,
not against what the code happened to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from audio_fixtures import FORMATS, write_audio
from musicssl.engine import scanner
from musicssl.engine.decode import DecodeError
from musicssl.engine.excerpts import ExcerptPolicy, excerpts
from musicssl.engine.library import Library
from musicssl.engine.metadata import MetadataError, read_metadata
from mutagen.asf import ASF
from mutagen.flac import FLAC, Picture
from mutagen.id3 import APIC, ID3, TCON, TIT2, TPE1, TRCK, TXXX
from mutagen.mp4 import MP4, MP4Cover
from mutagen.oggvorbis import OggVorbis
from reliability_tools import CLI, cli, integrity, run_as, silent_mp3

NOBODY = 65534
TEN_HOURS = 10 * 3600.0
BIG_TEXT = "x" * 1_000_000
MANY_GENRES = [f"genre {i}" for i in range(20_000)]
# FFmpeg cannot play these cut in half: the test Ogg Vorbis holds all its audio in one page, and
# the M4A's index (moov atom) is written at the end. The others play up to the cut.
UNPLAYABLE_WHEN_HALVED = {".ogg", ".m4a"}


class Corpus:
    """The fuzz library: what each path is expected to become."""

    def __init__(self, root: Path):
        self.root = root
        self.music = root / "music"
        self.locked_root = root / "locked-area"
        self.analyzed: set[str] = set()  # good files: must be analysed
        self.errors: dict[str, str] = {}  # bad files: path -> words the error row must contain
        self.folder_errors: dict[str, str] = {}  # scan_errors rows: path -> words
        self.ignored: set[str] = set()  # not audio files at all: no row

    def good(self, path: Path) -> None:
        self.analyzed.add(str(path))

    def bad(self, path: Path | str, words: str) -> None:
        self.errors[str(path)] = words


def _write_raw(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _tag_huge_id3(path: Path) -> None:
    tags = ID3(path)
    tags.add(TIT2(encoding=3, text=[BIG_TEXT]))
    tags.add(TCON(encoding=3, text=MANY_GENRES))
    tags.add(TPE1(encoding=3, text=["Nul\x00Split", "\x1b[31mred\x07"]))
    tags.add(TRCK(encoding=3, text=["9" * 30]))
    tags.add(APIC(encoding=3, mime="image/jpeg", type=3, desc="c", data=os.urandom(4_000_000)))
    for i in range(200):
        tags.add(TXXX(encoding=3, desc=f"key {i}", text=["v" * 1000]))
    tags.save(path)


def _tag_huge_vorbis(path: Path, flac: bool) -> None:
    tags = FLAC(path) if flac else OggVorbis(path)
    tags["title"] = BIG_TEXT
    tags["genre"] = MANY_GENRES
    tags["tracknumber"] = "9" * 5000
    tags["date"] = "-5"
    tags["a key with spaces"] = "value"
    if flac:
        picture = Picture()
        picture.data, picture.mime = os.urandom(4_000_000), "image/png"
        tags.add_picture(picture)
    tags.save()


def _tag_huge_mp4(path: Path) -> None:
    tags = MP4(path)
    tags["\xa9nam"] = BIG_TEXT
    tags["\xa9gen"] = MANY_GENRES
    tags["trkn"] = [(0, 0)]
    tags["\xa9day"] = "not a date"
    tags["covr"] = [MP4Cover(os.urandom(4_000_000))]
    tags.save()


def _tag_odd_asf(path: Path) -> None:
    tags = ASF(path)
    tags["Title"] = BIG_TEXT[:60_000]
    tags["WM/Genre"] = ["(62)", "(" + "9" * 5000 + ")"]
    tags.save()


def _good_files(c: Corpus, originals: dict[str, bytes]) -> None:
    good = c.music / "good"
    good.mkdir(parents=True)
    for i, ext in enumerate(FORMATS):
        path = write_audio(good / f"good{ext}", 2.0, i, {"title": f"Good {i}", "genre": "Rock/Pop"})
        originals[ext] = path.read_bytes()
        c.good(path)
    # named for another format: read by content
    for src, ext in ((".flac", ".mp3"), (".mp3", ".ogg"), (".wav", ".m4a"), (".m4a", ".wma")):
        c.good(_write_raw(good / f"really{src}{ext}", originals[src]))
    for name in ("line\nbreak.mp3", "tab\tand ☃ ünï.flac", " #leading space.ogg"):
        c.good(_write_raw(good / name, originals[os.path.splitext(name)[1]]))
    folder_named_like_audio = good / "album.flac"
    folder_named_like_audio.mkdir()
    c.good(_write_raw(folder_named_like_audio / "inside.opus", originals[".opus"]))
    c.good(silent_mp3(good / "ten hours of silence.mp3", TEN_HOURS))


def _odd_tags(c: Corpus) -> None:
    tags = c.music / "tags"
    tags.mkdir()
    writers = {
        "huge.mp3": _tag_huge_id3,
        "huge.flac": lambda p: _tag_huge_vorbis(p, flac=True),
        "huge.ogg": lambda p: _tag_huge_vorbis(p, flac=False),
        "huge.m4a": _tag_huge_mp4,
        "odd.wma": _tag_odd_asf,
    }
    for seed, (name, tag) in enumerate(writers.items()):
        path = write_audio(tags / name, 2.0, 20 + seed)
        tag(path)
        c.good(path)


def _bad_files(c: Corpus, originals: dict[str, bytes]) -> None:
    bad = c.music / "bad"
    bad.mkdir()
    rng = random.Random(8)
    for ext, data in originals.items():
        c.bad(_write_raw(bad / f"empty{ext}", b""), "empty file (0 bytes)")
        c.bad(_write_raw(bad / f"header only{ext}", data[:64]), "")
        half = _write_raw(bad / f"half{ext}", data[: len(data) // 2])
        if ext in UNPLAYABLE_WHEN_HALVED:
            c.bad(half, "")
        else:
            c.good(half)
    for ext in sorted(scanner.AUDIO_EXTENSIONS):
        c.bad(_write_raw(bad / f"noise{ext}", rng.randbytes(20_000)), "not a readable audio file")
    c.bad(_write_raw(bad / "notes.mp3", b"not audio at all\n" * 500), "not a readable audio file")
    raw_name = os.path.join(os.fsencode(bad), b"bad name \xff\xfe.mp3")
    with open(raw_name, "wb") as fh:
        fh.write(originals[".mp3"])
    c.bad(os.fsencode(raw_name).decode("utf-8", "backslashreplace"), "not valid UTF-8")
    # a valid playlist naming both odd files (URIs percent-encode bytes and line breaks)
    tracks = "".join(
        f"<track><location>{uri}</location></track>"
        for uri in ("bad%20name%20%FF%FE.mp3", "../good/line%0Abreak.mp3")
    )
    xspf = f'<playlist version="1" xmlns="http://xspf.org/ns/0/"><trackList>{tracks}</trackList>'
    _write_raw(bad / "odd names.xspf", f"{xspf}</playlist>".encode())

    _bad_playlists(c, bad, rng)
    _odd_headers(c, bad, rng)

    links = c.music / "links"
    links.mkdir()
    os.symlink(links / "gone.flac", links / "dangling.mp3")
    c.folder_errors[str(links / "dangling.mp3")] = "broken symlink"
    os.symlink("loop.ogg", links / "loop.ogg")
    c.folder_errors[str(links / "loop.ogg")] = "symlink loop"
    os.mkfifo(links / "pipe.mp3")  # opening it would block forever
    c.ignored.add(str(links / "pipe.mp3"))


def _wav(path: Path, rate: int, channels: int, data: bytes) -> Path:
    """A PCM WAV whose header says whatever it is told (damaged or hostile headers)."""
    block = max(1, channels * 2)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block) & 0xFFFFFFFF, block, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data))
    return _write_raw(path, b"RIFF" + struct.pack("<I", len(body) + len(data)) + body + data)


def _odd_headers(c: Corpus, bad: Path, rng: random.Random) -> None:
    """Headers that decode into absurd streams: 1 Hz once made a 200 KB file take 275 s."""
    noise = rng.randbytes(200_000)
    c.bad(_wav(bad / "one hertz.wav", 1, 1, noise), "1 Hz is not an audio sample rate")
    c.bad(_wav(bad / "two gigahertz.wav", 2**31 - 1, 1, noise), "not an audio sample rate")
    c.bad(_wav(bad / "255 channels.wav", 44100, 255, noise), "")
    c.bad(_wav(bad / "no channels.wav", 44100, 0, noise), "")


def _bad_playlists(c: Corpus, bad: Path, rng: random.Random) -> None:
    """Playlist files are imported after the scan: their problems are error rows too."""
    broken = {
        "noise.xspf": (rng.randbytes(3000), "invalid XSPF XML"),
        "entities.xspf": (b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "aa">]><playlist/>',
                          "entity declarations"),
        "no section.pls": (b"File1=a.mp3\n", "no [playlist] section"),
    }  # fmt: skip
    for name, (data, words) in broken.items():
        c.folder_errors[str(_write_raw(bad / name, data))] = words
    raw_name = os.path.join(os.fsencode(bad), b"mix \xff.m3u")
    with open(raw_name, "wb") as fh:
        fh.write(b"notes.mp3\n")
    c.folder_errors[raw_name.decode("utf-8", "backslashreplace")] = "not valid UTF-8"


def _locked_area(c: Corpus, originals: dict[str, bytes]) -> None:
    """Scanned as an unprivileged user (root reads everything)."""
    c.locked_root.mkdir()
    c.good(_write_raw(c.locked_root / "open.flac", originals[".flac"]))
    secret = _write_raw(c.locked_root / "secret.mp3", originals[".mp3"])
    c.bad(secret, "cannot read the file: Permission denied")
    closed = c.locked_root / "closed"
    closed.mkdir()
    _write_raw(closed / "behind.mp3", originals[".mp3"])
    c.folder_errors[str(closed)] = "cannot read folder: permission denied"


def build_corpus(root: Path) -> Corpus:
    c = Corpus(root)
    originals: dict[str, bytes] = {}
    _good_files(c, originals)
    _odd_tags(c)
    _bad_files(c, originals)
    _locked_area(c, originals)
    return c


def _chown_tree(root: Path, uid: int) -> None:
    for folder, dirs, files in os.walk(root):
        os.chown(folder, uid, uid)
        for name in dirs + files:
            os.chown(os.path.join(folder, name), uid, uid, follow_symlinks=False)


def _scan_as_nobody(db_path: Path, folder: Path) -> list[list[str]]:
    """Scan through the Library facade as nobody, like a user would (root reads everything)."""

    def scan() -> dict:
        with Library(db_path) as lib:
            return {"errors": lib.scan([folder]).errors}

    return run_as(NOBODY if os.getuid() == 0 else os.getuid(), scan)["errors"]


# Runs ARGV and prints "<exit code> <peak RSS KiB>". A child's ru_maxrss starts from its parent's
# peak (the kernel carries it across fork and exec), so measuring the CLI straight from pytest
# would report pytest's own peak; from this small launcher it reports the CLI's.
_PEAK = r"""
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def _run_measured(args: list[str], timeout: float) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in KiB) of one CLI run, from the kernel's own accounting."""
    launcher = [sys.executable, "-c", _PEAK, *args]
    done = subprocess.run(launcher, capture_output=True, text=True, timeout=timeout, check=False)
    code, peak_kib = map(int, done.stdout.split())
    return code, done.stderr, peak_kib


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[tuple[Corpus, Path, dict]]:
    """The corpus scanned (CLI as root, the locked area as nobody) and analysed (CLI)."""
    root = Path(tempfile.mkdtemp(prefix="musicssl-fuzz-"))
    try:
        corpus = build_corpus(root)
        db_path = root / "library.db"
        as_root = os.getuid() == 0
        if as_root:
            _chown_tree(root, NOBODY)
        (corpus.locked_root / "secret.mp3").chmod(0)
        (corpus.locked_root / "closed").chmod(0)
        try:
            locked_errors = _scan_as_nobody(db_path, corpus.locked_root)
        finally:
            (corpus.locked_root / "secret.mp3").chmod(0o644)
            (corpus.locked_root / "closed").chmod(0o755)
        scan = cli(db_path, "scan", corpus.music, timeout=120)
        code, stderr, peak_kib = _run_measured([*CLI, "--db", str(db_path), "analyze"], 300)
        run = {
            "locked_errors": locked_errors,
            "scan": scan,
            "analyze": (code, stderr),
            "peak_mib": peak_kib / 1024,
            "errors": json.loads(cli(db_path, "errors", "--json").stdout),
        }
        yield corpus, db_path, run
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _tracks(db_path: Path) -> dict[str, sqlite3.Row]:
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT t.*, (SELECT count(*) FROM embeddings e WHERE e.track_id = t.id) AS vectors, "
            "(SELECT count(*) FROM tags g WHERE g.track_id = t.id AND g.source = 'file') AS ntags "
            "FROM tracks t"
        ).fetchall()
    conn.close()
    return {row["path"]: row for row in rows}


def test_scan_and_analysis_finish_and_the_library_is_sound(fuzzed):
    corpus, db_path, run = fuzzed
    assert run["scan"].returncode == 0, run["scan"].stderr[-3000:]
    code, stderr = run["analyze"]
    assert code == 0, stderr[-3000:]
    assert integrity(db_path) == ("ok", [])


def test_every_good_file_is_analysed(fuzzed):
    corpus, db_path, _ = fuzzed
    tracks = _tracks(db_path)
    for path in sorted(corpus.analyzed):
        row = tracks.get(path)
        assert row is not None, f"{path!r} was not scanned"
        assert (row["status"], row["error"], row["vectors"]) == ("analyzed", None, 1), path
        assert row["duration"] > 0.5, path


def test_every_bad_file_has_a_clear_error_row(fuzzed):
    corpus, db_path, run = fuzzed
    shown = {row["path"]: row["error"] for row in run["errors"]}
    for path, words in sorted(corpus.errors.items()):
        message = shown.get(path)
        assert message, f"{path!r} has no error row"
        assert words in message, (path, message)
        # a person reads it: no Python exception names or reprs
        assert "Traceback" not in message and "Error(" not in message, (path, message)
    for path, words in sorted(corpus.folder_errors.items()):
        assert words in shown.get(path, ""), (path, shown.get(path))
    expected = corpus.analyzed | set(corpus.errors)
    assert set(_tracks(db_path)) == expected  # nothing else became a track: no FIFO, no link
    assert not corpus.ignored & set(shown)


def test_a_playlist_naming_odd_files_is_imported(fuzzed):
    corpus, db_path, _ = fuzzed
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT t.path FROM playlists p JOIN playlist_items i ON i.playlist_id = p.id "
            "JOIN tracks t ON t.id = i.track_id WHERE p.name = 'odd names' ORDER BY i.position"
        ).fetchall()
    conn.close()
    bad_name = str(corpus.music / "bad" / "bad name \\xff\\xfe.mp3")  # as the scanner shows it
    assert [r[0] for r in rows] == [bad_name, str(corpus.music / "good" / "line\nbreak.mp3")]


def test_nothing_is_left_waiting(fuzzed):
    _, db_path, _ = fuzzed
    statuses = {row["status"] for row in _tracks(db_path).values()}
    assert statuses == {"analyzed", "error"}


def test_huge_and_malformed_tags_are_kept_within_reason(fuzzed):
    corpus, db_path, _ = fuzzed
    tracks = _tracks(db_path)
    tags = corpus.music / "tags"
    for name in ("huge.mp3", "huge.flac", "huge.ogg", "huge.m4a"):
        row = tracks[str(tags / name)]
        assert len(row["title"]) == len(BIG_TEXT), name
        assert row["ntags"] == len(MANY_GENRES), name
        assert row["track_number"] is None and row["year"] is None, name
    mp3 = tracks[str(tags / "huge.mp3")]
    assert mp3["artist"] == "Nul; Split; [31mred"  # control characters cannot reach a terminal
    wma = tracks[str(tags / "odd.wma")]
    assert wma["genre"].startswith("Pop; Funk; (9999")  # "(62)" is the ID3v1 genre Pop/Funk


def test_ten_hour_file_is_analysed_without_decoding_it_into_memory(fuzzed):
    corpus, db_path, run = fuzzed
    row = _tracks(db_path)[str(corpus.music / "good" / "ten hours of silence.mp3")]
    assert row["duration"] == pytest.approx(TEN_HOURS, rel=1e-3)
    # spaced excerpts seek: the decoded duration is never measured by decoding everything
    assert (row["status"], row["duration_decoded"]) == ("analyzed", 0)
    # Decoded whole at the model's 22.05 kHz as float32 it would take 3.2 GB; the whole run,
    # torch included (921 MiB measured), must stay well below that.
    assert run["peak_mib"] < 2048, run["peak_mib"]


def test_unreadable_files_and_folders_as_a_normal_user(fuzzed):
    corpus, _, run = fuzzed
    reported = dict(map(tuple, run["locked_errors"]))
    assert reported == {
        str(corpus.locked_root / "secret.mp3"): "cannot read the file: Permission denied",
        str(corpus.locked_root / "closed"): "cannot read folder: permission denied",
    }


# -- mutation fuzzing: damaged copies of good files -----------------------------------------

MUTANTS_PER_FORMAT = 25  # 2,400 (300 per format) were also run once: no failure


def _mutant(data: bytes, rng: random.Random) -> bytes:
    """A damaged copy: flipped header bytes, flipped bytes anywhere, a duplicated stretch, or an
    absurd 32-bit field (size, count, rate) in the header."""
    out = bytearray(data)
    mode = rng.randrange(4)
    if mode == 0:
        for _ in range(rng.randrange(1, 20)):
            out[rng.randrange(min(len(out), 4096))] = rng.randrange(256)
    elif mode == 1:
        for _ in range(rng.randrange(1, 50)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif mode == 2:
        at, src = rng.randrange(len(out)), rng.randrange(len(out))
        out[at:at] = out[src : src + rng.randrange(1, 5000)]
    else:
        at = rng.randrange(min(len(out), 2048))
        out[at : at + 4] = rng.choice(
            [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"]
        )
    return bytes(out)


@pytest.mark.parametrize("ext", list(FORMATS))
def test_damaged_copies_are_read_or_refused_cleanly_and_quickly(tmp_path, ext):
    """Every reader failure must be the user-facing MetadataError/DecodeError, never another
    exception (which would turn into an "unexpected error" or stop an analysis batch)."""
    good = write_audio(tmp_path / f"good{ext}", 2.0, 5, {"title": "t", "genre": "g"}).read_bytes()
    rng = random.Random(ext)
    for i in range(MUTANTS_PER_FORMAT):
        path = _write_raw(tmp_path / f"m{i}{ext}", _mutant(good, rng))
        started = time.monotonic()
        try:
            duration = read_metadata(path).duration
        except MetadataError:
            duration = None
        with contextlib.suppress(DecodeError):
            for _ in excerpts(str(path), 22050, 66150, ExcerptPolicy(), duration):
                pass
        assert time.monotonic() - started < 10, path
