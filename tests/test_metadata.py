"""read_metadata on real files of every format FFmpeg writes, and genre/number parsing."""

from __future__ import annotations

import os

import mutagen
import pytest
from audio_fixtures import write_audio
from musicssl.engine import decode
from musicssl.engine.metadata import (
    MetadataError,
    parse_track_number,
    parse_year,
    read_metadata,
    split_genres,
)
from mutagen.flac import FLAC
from mutagen.id3 import ID3, TCON, TIT2, TPE1
from mutagen.wave import WAVE

TAGS = {
    "title": "Café ♫ Ünïcode 東京",
    "artist": "Björk",
    "album": "Homogénic",
    "album_artist": "Various Ärtists",
    "genre": "Rock; Pop",
    "date": "1999",
    "track": "3/12",
}
# extension -> codec name read_metadata reports (mutagen's type, or FFmpeg's for the fallback)
CODECS = {
    ".mp3": "mp3",
    ".flac": "flac",
    ".ogg": "vorbis",
    ".opus": "opus",
    ".m4a": "aac",
    ".wma": "wmav2",
    ".wav": "pcm_s16le",
    ".aiff": "pcm_s16be",
}


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    return {ext: write_audio(folder / f"song{ext}", seconds=1.0, tags=TAGS) for ext in CODECS}


@pytest.mark.parametrize("ext", [".mp3", ".flac", ".ogg", ".opus", ".m4a", ".wma"])
def test_every_tagged_format_reads_tags_and_info(encoded, ext):
    meta = read_metadata(encoded[ext])
    assert meta.title == TAGS["title"]
    assert meta.artist == "Björk"
    assert meta.album == "Homogénic"
    assert meta.album_artist == "Various Ärtists"
    assert meta.genres == ["Rock", "Pop"]
    assert meta.genre == "Rock; Pop"
    assert meta.year == 1999
    assert meta.track_number == 3
    assert meta.codec == CODECS[ext]
    assert meta.channels == 2
    assert meta.sample_rate == (48000 if ext == ".opus" else 44100)
    if ext != ".ogg":  # FFmpeg's native Vorbis encoder writes granules that understate length
        assert meta.duration == pytest.approx(1.0, abs=0.1)
    else:
        assert meta.duration > 0


def test_wav_tags_come_from_the_ffmpeg_fallback(encoded):
    # The premise: mutagen does not read the RIFF LIST INFO chunk FFmpeg writes.
    assert not mutagen.File(encoded[".wav"]).tags
    meta = read_metadata(encoded[".wav"])
    assert (meta.title, meta.artist, meta.album) == (TAGS["title"], "Björk", "Homogénic")
    assert meta.genres == ["Rock", "Pop"]
    assert (meta.year, meta.track_number) == (1999, 3)
    assert (meta.codec, meta.sample_rate, meta.channels) == ("pcm_s16le", 44100, 2)
    assert meta.duration == pytest.approx(1.0, abs=0.01)


def test_aiff_title_comes_from_the_ffmpeg_fallback(encoded):
    # FFmpeg's AIFF muxer keeps only the title (NAME chunk) of our tags.
    meta = read_metadata(encoded[".aiff"])
    assert meta.title == TAGS["title"]
    assert (meta.codec, meta.sample_rate, meta.channels) == ("pcm_s16be", 44100, 2)
    assert meta.duration == pytest.approx(1.0, abs=0.01)


def test_wav_with_an_id3_chunk_is_read_by_mutagen_without_ffmpeg(encoded, tmp_path, monkeypatch):
    path = tmp_path / "id3.wav"
    path.write_bytes(encoded[".wav"].read_bytes())
    wav = WAVE(path)
    wav.add_tags()
    wav.tags.add(TIT2(encoding=3, text="From ID3"))
    wav.tags.add(TPE1(encoding=3, text="Ïd3 Artist"))
    wav.tags.add(TCON(encoding=3, text=["(17)", "Jazz"]))
    wav.save()

    def no_probe(p):
        raise AssertionError("the fallback should not run")

    monkeypatch.setattr(decode, "probe", no_probe)
    meta = read_metadata(path)
    assert (meta.title, meta.artist, meta.genres) == ("From ID3", "Ïd3 Artist", ["Rock", "Jazz"])
    assert meta.codec == "pcm"


def test_id3_numeric_genre_becomes_its_name(encoded, tmp_path):
    path = tmp_path / "numeric.mp3"
    path.write_bytes(encoded[".mp3"].read_bytes())
    tags = ID3(path)
    tags.add(TCON(encoding=3, text=["(17)"]))
    tags.save()
    assert read_metadata(path).genres == ["Rock"]


def test_multi_valued_vorbis_genres_are_split_and_joined(encoded, tmp_path):
    path = tmp_path / "multi.flac"
    path.write_bytes(encoded[".flac"].read_bytes())
    flac = FLAC(path)
    flac["genre"] = ["Jazz", "Soul/Funk", "jazz"]
    flac["date"] = "2004-05-01"
    flac["tracknumber"] = "07"
    flac.save()
    meta = read_metadata(path)
    assert meta.genres == ["Jazz", "Soul", "Funk"]
    assert meta.genre == "Jazz; Soul; Funk"
    assert (meta.year, meta.track_number) == (2004, 7)


def test_misnamed_file_is_read_by_its_content(encoded, tmp_path):
    path = tmp_path / "really_flac.mp3"
    path.write_bytes(encoded[".flac"].read_bytes())
    meta = read_metadata(path)
    assert meta.codec == "flac"
    assert meta.title == TAGS["title"]


@pytest.mark.parametrize(
    "name, content",
    [
        ("random.mp3", os.urandom(20000)),
        ("random.flac", os.urandom(20000)),  # FFmpeg "opens" this one as a 0 Hz FLAC stream
        ("text.mp3", b"this is a shopping list, not a song\n" * 20),
        ("empty.ogg", b""),
    ],
)
def test_junk_raises_a_clear_metadata_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(MetadataError) as info:
        read_metadata(path)
    assert info.value.path == str(path)
    assert info.value.reason.startswith("not a readable audio file (mutagen: ")
    assert "; ffmpeg: " in info.value.reason
    assert str(path) not in info.value.reason  # the error row names the file already


def test_truncated_mp3_raises(encoded, tmp_path):
    path = tmp_path / "cut.mp3"
    path.write_bytes(encoded[".mp3"].read_bytes()[:300])
    with pytest.raises(MetadataError, match="not a readable audio file"):
        read_metadata(path)


def test_missing_file_raises_metadata_error(tmp_path):
    with pytest.raises(MetadataError):
        read_metadata(tmp_path / "nope.mp3")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Rock; Pop", ["Rock", "Pop"]),
        ("Rock/Pop", ["Rock", "Pop"]),
        ("Rock, Pop", ["Rock", "Pop"]),
        ("Rock|Pop", ["Rock", "Pop"]),
        ("Rock\x00Pop", ["Rock", "Pop"]),
        (["Rock", "Pop; Jazz"], ["Rock", "Pop", "Jazz"]),
        ("  Hip-Hop ;; ; R&B  ", ["Hip-Hop", "R&B"]),
        ("rock; Rock; ROCK; Pop", ["rock", "Pop"]),
        ("(17)", ["Rock"]),
        ("(17); Pop", ["Rock", "Pop"]),
        ("Drum & Bass", ["Drum & Bass"]),
        ("", []),
        ([], []),
        (None, []),
    ],
)
def test_split_genres(value, expected):
    assert split_genres(value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [("1999", 1999), ("1999-05-01", 1999), ("2001-01-01T00:00:00Z", 2001), ("05/01/1987", 1987),
     ("", None), (None, None), ("unknown", None), ("0000", None)],
)  # fmt: skip
def test_parse_year(value, expected):
    assert parse_year(value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [("3/12", 3), ("03", 3), ("7", 7), (" 4 of 9", 4), ("0", None), ("", None), ("A1", None),
     (None, None)],
)  # fmt: skip
def test_parse_track_number(value, expected):
    assert parse_track_number(value) == expected
