"""Property-based tests (hypothesis) for the two text formats users' data passes through: playlist
files (write -> read keeps what the format can carry; reading arbitrary bytes never crashes) and
genre/tag splitting (stable, clean, and consistent between ID3v1 numbers and typed names).

`tests/test_playlist_formats.py` holds the path round-trip property; these add metadata and junk.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from musicssl.engine import playlist_formats as pf
from musicssl.engine.metadata import parse_track_number, parse_year, split_genres

FORMATS = pf.FORMATS
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text a tag can hold: anything but surrogates (the DB only ever holds valid UTF-8).
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)
_DURATION = st.one_of(st.none(), st.floats(0, 10**6, allow_nan=False))
_ENTRY = st.tuples(st.one_of(st.none(), _TEXT), st.one_of(st.none(), _TEXT), _DURATION)
_XML_INVALID = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _clean(text: str | None, fmt: str) -> str | None:
    """What a format gives back for one text field: stripped, and single-line outside XSPF."""
    if text is None:
        return None
    if fmt == "xspf":  # XML cannot carry some characters; parsers turn CR into LF
        text = _LINE_BREAKS.sub("\n", _XML_INVALID.sub("", text))
    else:  # control characters would break the line (a NUL makes it binary)
        text = _CONTROL.sub(" ", " ".join(_LINE_BREAKS.split(text)))
    return text.strip() or None


def _expected(title: str | None, artist: str | None, duration: float | None, fmt: str):
    """(title, artist, duration) as read back; M3U/PLS keep "Artist - Title" in one field."""
    title, artist = _clean(title, fmt), _clean(artist, fmt)
    if fmt != "xspf" and not title:
        title, artist = artist, None  # an artist alone is displayed, and read back, as the title
    if duration is None:
        return title, artist, None
    seconds = round(duration * 1000) / 1000 if fmt == "xspf" else round(duration)
    return title, artist, float(seconds)


def _ambiguous(title: str | None, artist: str | None) -> bool:
    """'A - B - C' cannot say where the artist ends: M3U/PLS split at the first ' - '."""
    shown = " ".join(x for x in (artist, title) if x)
    return " - " in " ".join(_LINE_BREAKS.split(shown))


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(items=st.lists(_ENTRY, min_size=1, max_size=5))
@example(items=[("(62) Pop/Funk", "AC/DC", 61.4)])
@example(items=[("Tab\tinside", "  padded  ", 0.0)])
def test_metadata_survives_a_write_and_read(fmt, items):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        entries = [
            pf.Entry(str(folder / f"track {i}.mp3"), title=t, artist=a, duration=d)
            for i, (t, a, d) in enumerate(items)
        ]
        back = pf.read_playlist(pf.write_playlist(folder / f"list.{fmt}", entries))
    assert [e.path for e in back] == [e.path for e in entries]
    for (title, artist, duration), got in zip(items, back, strict=True):
        if fmt != "xspf" and _ambiguous(_clean(title, fmt), _clean(artist, fmt)):
            continue
        want = _expected(title, artist, duration, fmt)
        assert (got.title, got.artist) == want[:2]
        assert got.duration == (None if want[2] is None else pytest.approx(want[2]))


@pytest.mark.parametrize("fmt", ["m3u8", "xspf"])
@SETTINGS
@given(album=_TEXT)
def test_album_survives_where_the_format_has_one(fmt, album):
    with tempfile.TemporaryDirectory() as tmp:
        entry = pf.Entry(str(Path(tmp) / "a.mp3"), title="t", album=album)
        (back,) = pf.read_playlist(pf.write_playlist(Path(tmp) / f"l.{fmt}", [entry]))
    assert back.album == _clean(album, fmt)


_HEADS = [b"", b"#EXTM3U\n", b"[playlist]\n", b'<?xml version="1.0"?><playlist>', b"\xef\xbb\xbf"]


@pytest.mark.parametrize("suffix", [*FORMATS, "txt"])
@SETTINGS
@given(head=st.sampled_from(_HEADS), body=st.binary(max_size=300))
@example(head=b"#EXTM3U\n", body=b"file:///%00/x.mp3\n#EXTINF:9" + b"9" * 5000 + b",x\nx.mp3")
@example(head=b"[playlist]\n", body=b"File1=\\\\server\\share\\x.mp3\nLength1=1e999\n")
@example(head=b"[playlist]\n", body=b"File" + b"9" * 5000 + b"=x.mp3\n")  # once a ValueError
@example(
    head=b"<playlist><trackList>",
    body=b"<track><location>%FF.mp3</location></track></trackList></playlist>",
)
@example(head=b"", body=b"\xff\xfe" + "#EXTM3U\n\ud800.mp3".encode("utf-16-le", "surrogatepass"))
def test_reading_any_bytes_gives_entries_or_a_playlist_error(suffix, head, body):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"junk.{suffix}"
        path.write_bytes(head + body)
        try:
            parsed = pf.parse_playlist(path)
        except pf.PlaylistFormatError as exc:
            assert str(path) in str(exc)
            return
    for entry in parsed.entries:
        assert Path(entry.path).is_absolute()
        entry.path.encode("utf-8")  # text SQLite and a terminal accept (bytes shown as \xNN)
        assert entry.duration is None or entry.duration >= 0


# -- genres and tag numbers -----------------------------------------------------------------

_SEPARATORS = ";/,|\x00"
_GENRE_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@SETTINGS
@given(value=st.one_of(_GENRE_TEXT, st.lists(_GENRE_TEXT, max_size=4)))
@example(value="(62)")
@example(value=["(17)", "rock", "ROCK"])
@example(value="(" + "9" * 5000 + ")")
def test_split_genres_is_clean_unique_and_stable(value):
    genres = split_genres(value)
    for genre in genres:
        assert genre and genre == genre.strip()
        assert not set(genre) & set(_SEPARATORS)
    assert len({g.casefold() for g in genres}) == len(genres)
    # the stored display string ("; "-joined) splits back into the same tags
    assert split_genres("; ".join(genres)) == genres


@SETTINGS
@given(names=st.lists(st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc")), min_size=1,
                              max_size=12).filter(lambda s: not set(s) & set(_SEPARATORS + "()")),
                      max_size=6))  # fmt: skip
def test_typed_genres_keep_their_order_and_first_spelling(names):
    expected: list[str] = []
    for name in (n.strip() for n in names):
        if name and name.casefold() not in {e.casefold() for e in expected}:
            expected.append(name)
    assert split_genres(" ; ".join(names)) == expected
    assert split_genres(names) == expected


@given(number=st.integers(0, 255))
def test_id3v1_numbers_mean_the_same_as_their_names(number):
    from mutagen._constants import GENRES

    if number < len(GENRES):
        assert split_genres(f"({number})") == split_genres(GENRES[number])
    else:
        assert split_genres(f"({number})") == [f"({number})"]


@SETTINGS
@given(value=st.text(max_size=60))
@example(value="9" * 30)
@example(value="9" * 5000)
def test_track_and_year_parsers_never_fail_and_fit_sqlite(value):
    track, year = parse_track_number(value), parse_year(value)
    assert track is None or 0 < track < 2**31
    assert year is None or 0 < year <= 9999


@given(track=st.integers(1, 999_999_999), total=st.integers(1, 9999))
def test_track_numbers_are_read_in_the_usual_spellings(track, total):
    for text in (str(track), f"{track:04d}", f"{track}/{total}", f" {track} of {total}"):
        assert parse_track_number(text) == track
