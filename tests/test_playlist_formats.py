"""Playlist files: what each format writes, what the reader accepts, write -> read round trips."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from musicssl.engine import playlist_formats as pf
from musicssl.engine.playlist_formats import Entry, PlaylistFormatError, parse_playlist

FORMATS = ["m3u8", "m3u", "xspf", "pls"]
XSPF = "{http://xspf.org/ns/0/}"


@pytest.fixture
def music(tmp_path):
    """Three placeholder tracks under music/, one with awkward characters in its name."""
    folder = tmp_path / "music" / "Ünïcode Artist"
    folder.mkdir(parents=True)
    names = ["01 Intro.mp3", "02 Song, with #hash & 100%.flac", "03 Ça va – été.ogg"]
    entries = [
        Entry(str(folder / names[0]), title="Intro", artist="Björk", album="Début", duration=61.4),
        Entry(str(folder / names[1]), title="Song", artist="A, B", duration=200.0),
        Entry(str(folder / names[2])),
    ]
    for entry in entries:
        Path(entry.path).touch()
    return entries


def paths(entries):
    return [e.path for e in entries]


# ---------------------------------------------------------------------------------------------
# Writing: what lands in each file
# ---------------------------------------------------------------------------------------------


def test_m3u8_is_extended_utf8_without_bom_with_relative_paths(tmp_path, music):
    dest = tmp_path / "lists" / "mix.m3u8"
    dest.parent.mkdir()
    assert pf.write_playlist(dest, music, name="My Mix") == dest
    data = dest.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf")
    assert b"\r" not in data
    lines = data.decode("utf-8").split("\n")
    assert lines[0] == "#EXTM3U"
    assert "#PLAYLIST:My Mix" in lines
    assert "#EXTINF:61,Björk - Intro" in lines
    assert "#EXTALB:Début" in lines
    assert "#EXTINF:200,A, B - Song" in lines
    assert "#EXTINF:-1," in lines
    assert "../music/Ünïcode Artist/01 Intro.mp3" in lines
    assert "../music/Ünïcode Artist/03 Ça va – été.ogg" in lines
    assert lines[-1] == ""  # ends with a newline


def test_absolute_paths_when_relative_is_false(tmp_path, music):
    dest = pf.write_playlist(tmp_path / "abs.m3u", music, relative=False)
    text = dest.read_text("utf-8")
    for entry in music:
        assert f"\n{entry.path}\n" in text


def test_pls_layout(tmp_path, music):
    dest = pf.write_playlist(tmp_path / "music" / "list.pls", music)
    lines = dest.read_text("utf-8").splitlines()
    assert lines[0] == "[playlist]"
    assert "File1=Ünïcode Artist/01 Intro.mp3" in lines
    assert "Title1=Björk - Intro" in lines
    assert "Length1=61" in lines
    assert "Length3=-1" in lines
    assert "NumberOfEntries=3" in lines
    assert lines[-1] == "Version=2"


def test_xspf_is_valid_xspf_with_uri_locations(tmp_path, music):
    dest = pf.write_playlist(tmp_path / "x.xspf", music, relative=False, name="Mix & Match")
    root = ET.parse(dest).getroot()
    assert root.tag == f"{XSPF}playlist"
    assert root.get("version") == "1"
    assert root.find(f"{XSPF}title").text == "Mix & Match"
    tracks = root.findall(f"{XSPF}trackList/{XSPF}track")
    assert len(tracks) == 3
    first = tracks[0]
    assert first.find(f"{XSPF}location").text == Path(music[0].path).as_uri()
    assert first.find(f"{XSPF}creator").text == "Björk"
    assert first.find(f"{XSPF}album").text == "Début"
    assert first.find(f"{XSPF}duration").text == "61400"
    second = tracks[1].find(f"{XSPF}location").text
    assert second.endswith("Song%2C%20with%20%23hash%20%26%20100%25.flac")
    assert tracks[2].find(f"{XSPF}title") is None


def test_xspf_relative_locations_are_percent_encoded_uri_references(tmp_path, music):
    (tmp_path / "lists").mkdir()
    dest = pf.write_playlist(tmp_path / "lists" / "x.xspf", music, relative=True)
    locations = [e.text for e in ET.parse(dest).getroot().iter(f"{XSPF}location")]
    assert locations[0] == "../music/%C3%9Cn%C3%AFcode%20Artist/01%20Intro.mp3"
    assert all(" " not in loc and "#" not in loc for loc in locations)


def test_empty_playlist_writes_and_reads_back_empty(tmp_path):
    for fmt in FORMATS:
        dest = pf.write_playlist(tmp_path / f"empty.{fmt}", [])
        assert pf.read_playlist(dest) == []


def test_unknown_format_is_a_clear_value_error(tmp_path, music):
    with pytest.raises(ValueError, match=r"\.txt.*m3u8"):
        pf.write_playlist(tmp_path / "list.txt", music)
    with pytest.raises(ValueError, match="unknown playlist format 'wpl'"):
        pf.write_playlist(tmp_path / "list.m3u", music, fmt="wpl")
    assert list(tmp_path.glob("list*")) == []
    # fmt overrides the extension (case and a leading dot are ignored)
    dest = pf.write_playlist(tmp_path / "list.txt", music, fmt=".XSPF")
    assert dest.read_text("utf-8").startswith("<?xml")


def test_line_break_in_a_path_cannot_be_written_to_m3u(tmp_path):
    with pytest.raises(ValueError, match="line break"):
        pf.write_playlist(tmp_path / "x.m3u8", [Entry(str(tmp_path / "a\nb.mp3"))])
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Atomic writing
# ---------------------------------------------------------------------------------------------


def test_write_replaces_the_file_and_leaves_no_temp_files(tmp_path, music):
    dest = tmp_path / "mix.m3u8"
    dest.write_text("old contents")
    pf.write_playlist(dest, music)
    assert sorted(os.listdir(tmp_path)) == ["mix.m3u8", "music"]
    assert paths(pf.read_playlist(dest)) == paths(music)


def test_interrupted_write_keeps_the_old_file_and_cleans_up(tmp_path, music, monkeypatch):
    dest = tmp_path / "mix.pls"
    dest.write_text("[playlist]\nFile1=old.mp3\n")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(pf.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        pf.write_playlist(dest, music)
    assert dest.read_text() == "[playlist]\nFile1=old.mp3\n"
    assert sorted(os.listdir(tmp_path)) == ["mix.pls", "music"]


def test_write_into_a_missing_folder_fails_without_creating_it(tmp_path, music):
    with pytest.raises(FileNotFoundError):
        pf.write_playlist(tmp_path / "nope" / "x.m3u8", music)
    assert not (tmp_path / "nope").exists()


def test_write_onto_a_folder_is_refused(tmp_path, music):
    (tmp_path / "dir.m3u").mkdir()
    with pytest.raises(IsADirectoryError):
        pf.write_playlist(tmp_path / "dir.m3u", music)


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("relative", [True, False])
def test_round_trip_keeps_paths_and_metadata(tmp_path, music, fmt, relative):
    (tmp_path / "lists").mkdir()
    dest = pf.write_playlist(tmp_path / "lists" / f"mix.{fmt}", music, relative=relative)
    back = pf.read_playlist(dest)
    assert paths(back) == paths(music)
    assert back[0].title == "Intro" and back[0].artist == "Björk"
    assert back[0].duration == pytest.approx(61.4 if fmt == "xspf" else 61)
    assert back[1].artist == "A, B" and back[1].title == "Song"
    assert back[2].title is None and back[2].artist is None and back[2].duration is None
    if fmt in ("xspf", "m3u8", "m3u"):
        assert back[0].album == "Début"


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_of_names_starting_with_hash_or_space_and_with_colons(tmp_path, fmt):
    folder = tmp_path / "lists"
    folder.mkdir()
    entries = [
        Entry(str(folder / "#1 hit.mp3")),
        Entry(str(folder / " leading space.mp3")),
        Entry(str(folder / "Live: Paris.mp3")),
        Entry(str(folder / "http:not a url.mp3")),
        Entry(str(folder / "sub" / "#tag" / "x.mp3")),
        Entry(str(folder / "a.mp3")),
        Entry(str(folder / "a.mp3")),  # duplicates are kept
    ]
    dest = pf.write_playlist(folder / f"list.{fmt}", entries)
    assert paths(pf.read_playlist(dest)) == paths(entries)


_NAME_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\\\x00\n\r")
_component = st.text(_NAME_CHARS, min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))
_track = st.tuples(
    st.sampled_from(["lists", "lists/sub", "music", "other root"]),
    st.lists(_component, max_size=2),
    st.text(_NAME_CHARS, min_size=1, max_size=16),
    st.sampled_from([".mp3", ".flac", ".m4a"]),
)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(tracks=st.lists(_track, min_size=1, max_size=6), relative=st.booleans())
def test_property_write_then_read_gives_the_same_paths(tmp_path, fmt, tracks, relative):
    # The tracks need not exist: reading resolves paths without touching the files.
    expected = [
        os.path.join(str(tmp_path), base, *dirs, stem + ext) for base, dirs, stem, ext in tracks
    ]
    (tmp_path / "lists").mkdir(exist_ok=True)  # tmp_path is shared by all examples
    dest = pf.write_playlist(
        tmp_path / "lists" / f"prop.{fmt}",
        [Entry(p, title=stem) for p, (_, _, stem, _) in zip(expected, tracks, strict=True)],
        relative=relative,
    )
    assert paths(pf.read_playlist(dest)) == [os.path.normpath(p) for p in expected]


# ---------------------------------------------------------------------------------------------
# Reading what other programs write
# ---------------------------------------------------------------------------------------------


def test_m3u_relative_paths_resolve_against_the_playlist_folder(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "a.m3u").write_text("../music/x.mp3\nsub/./y.mp3\n/abs/z.mp3\n", "utf-8")
    cwd = os.getcwd()
    try:
        os.chdir("/")  # the reader must not resolve against the working directory
        got = paths(pf.read_playlist(lists / "a.m3u"))
    finally:
        os.chdir(cwd)
    assert got == [str(tmp_path / "music" / "x.mp3"), str(lists / "sub" / "y.mp3"), "/abs/z.mp3"]


def test_latin1_m3u_is_decoded(tmp_path):
    (tmp_path / "old.m3u").write_bytes(b"#EXTM3U\n#EXTINF:5,Beyonc\xe9 - Caf\xe9\nCaf\xe9.mp3\n")
    [entry] = pf.read_playlist(tmp_path / "old.m3u")
    assert entry.path == str(tmp_path / "Café.mp3")
    assert (entry.artist, entry.title, entry.duration) == ("Beyoncé", "Café", 5.0)


def test_cp1252_m3u_is_decoded(tmp_path):
    (tmp_path / "old.m3u").write_bytes(b"\x93quoted\x94 \x80.mp3\r\n")
    assert paths(pf.read_playlist(tmp_path / "old.m3u")) == [
        str(tmp_path / "\u201cquoted\u201d €.mp3")
    ]


def test_utf8_m3u_is_not_mistaken_for_latin1(tmp_path):
    (tmp_path / "new.m3u").write_text("Café.mp3\n", "utf-8")
    assert paths(pf.read_playlist(tmp_path / "new.m3u")) == [str(tmp_path / "Café.mp3")]


@pytest.mark.parametrize("suffix", ["m3u", "m3u8", "pls", "xspf"])
def test_utf8_bom_is_ignored(tmp_path, suffix):
    body = {
        "m3u": "#EXTM3U\nÉté.mp3\n",
        "m3u8": "Été.mp3\n",
        "pls": "[playlist]\nFile1=Été.mp3\n",
        "xspf": '<?xml version="1.0" encoding="UTF-8"?><playlist version="1" '
        'xmlns="http://xspf.org/ns/0/"><trackList><track><location>%C3%89t%C3%A9.mp3</location>'
        "</track></trackList></playlist>",
    }[suffix]
    (tmp_path / f"b.{suffix}").write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    assert paths(pf.read_playlist(tmp_path / f"b.{suffix}")) == [str(tmp_path / "Été.mp3")]


def test_utf16_m3u_with_bom(tmp_path):
    (tmp_path / "w.m3u").write_bytes("#EXTM3U\r\nÉté.mp3\r\n".encode("utf-16"))
    assert paths(pf.read_playlist(tmp_path / "w.m3u")) == [str(tmp_path / "Été.mp3")]


def test_crlf_blank_lines_and_comments(tmp_path):
    text = "#EXTM3U\r\n\r\n# a comment\r\n   \r\n#EXTINF:10,T\r\na.mp3\r\n\r\nb.mp3  \r\n"
    (tmp_path / "c.m3u8").write_bytes(text.encode())
    got = pf.read_playlist(tmp_path / "c.m3u8")
    assert paths(got) == [str(tmp_path / "a.mp3"), str(tmp_path / "b.mp3")]
    assert got[0].title == "T" and got[1].title is None  # EXTINF applies to the next entry only


def test_extinf_variants(tmp_path):
    text = (
        "#EXTM3U\n"
        '#EXTINF:-1 tvg-id="x,y",Artist - Title - Part 2\na.mp3\n'
        "#EXTINF:12.5,\nb.mp3\n"
        "#extinf:7,Just A Title\nc.mp3\n"
        "#EXTINF:broken\nd.mp3\n"
    )
    (tmp_path / "e.m3u8").write_text(text, "utf-8")
    a, b, c, d = pf.read_playlist(tmp_path / "e.m3u8")
    assert (a.artist, a.title, a.duration) == ("Artist", "Title - Part 2", None)
    assert (b.title, b.duration) == (None, 12.5)
    assert (c.artist, c.title, c.duration) == (None, "Just A Title", 7.0)
    assert d.path == str(tmp_path / "d.mp3") and d.title is None


def test_windows_backslashes_become_folders(tmp_path):
    (tmp_path / "w.m3u").write_bytes(b"Music\\Artist\\song.mp3\r\n..\\up.mp3\r\n")
    assert paths(pf.read_playlist(tmp_path / "w.m3u")) == [
        str(tmp_path / "Music" / "Artist" / "song.mp3"),
        str(tmp_path.parent / "up.mp3"),
    ]


@pytest.mark.skipif(os.sep != "/", reason="a backslash is a separator on Windows")
def test_existing_file_with_a_backslash_in_its_name_is_kept(tmp_path):
    (tmp_path / "odd\\name.mp3").touch()
    (tmp_path / "w.m3u").write_text("odd\\name.mp3\nother\\name.mp3\n", "utf-8")
    assert paths(pf.read_playlist(tmp_path / "w.m3u")) == [
        str(tmp_path / "odd\\name.mp3"),
        str(tmp_path / "other" / "name.mp3"),
    ]


def test_file_uris_are_decoded_in_every_format(tmp_path):
    target = tmp_path / "a b#c%d é.mp3"
    uri = target.as_uri()
    assert "%20" in uri and "%23" in uri
    (tmp_path / "u.m3u8").write_text(f"{uri}\nfile://localhost{target.as_posix()}\n", "utf-8")
    (tmp_path / "u.pls").write_text(f"[playlist]\nFile1={uri}\n", "utf-8")
    (tmp_path / "u.xspf").write_text(
        '<playlist version="1" xmlns="http://xspf.org/ns/0/"><trackList>'
        f"<track><location>{uri}</location></track></trackList></playlist>",
        "utf-8",
    )
    assert paths(pf.read_playlist(tmp_path / "u.m3u8")) == [str(target)] * 2
    assert paths(pf.read_playlist(tmp_path / "u.pls")) == [str(target)]
    assert paths(pf.read_playlist(tmp_path / "u.xspf")) == [str(target)]


def test_plain_m3u_paths_are_not_percent_decoded(tmp_path):
    (tmp_path / "p.m3u").write_text("100%25 pure.mp3\n", "utf-8")
    assert paths(pf.read_playlist(tmp_path / "p.m3u")) == [str(tmp_path / "100%25 pure.mp3")]


def test_stream_urls_are_skipped_but_counted(tmp_path):
    (tmp_path / "s.m3u").write_text(
        "#EXTM3U\n#EXTINF:-1,Radio\nhttp://radio.example/stream\na.mp3\nHTTPS://x.example/b\n"
        "rtsp://cam.example/live\n",
        "utf-8",
    )
    (tmp_path / "s.pls").write_text(
        "[playlist]\nFile1=http://radio.example/a\nTitle1=Radio\nFile2=a.mp3\nNumberOfEntries=2\n",
        "utf-8",
    )
    (tmp_path / "s.xspf").write_text(
        '<playlist version="1" xmlns="http://xspf.org/ns/0/"><trackList>'
        "<track><location>https://x.example/a.ogg</location></track>"
        "<track><location>a.mp3</location></track><track><title>no location</title></track>"
        "</trackList></playlist>",
        "utf-8",
    )
    m3u = parse_playlist(tmp_path / "s.m3u")
    assert paths(m3u.entries) == [str(tmp_path / "a.mp3")]
    assert m3u.entries[0].title is None  # the radio's EXTINF did not leak onto the next entry
    assert len(m3u.urls) == 3
    pls = parse_playlist(tmp_path / "s.pls")
    assert (paths(pls.entries), pls.urls) == ([str(tmp_path / "a.mp3")], ["http://radio.example/a"])
    xspf = parse_playlist(tmp_path / "s.xspf")
    assert (paths(xspf.entries), xspf.urls) == (
        [str(tmp_path / "a.mp3")],
        ["https://x.example/a.ogg"],
    )


def test_pls_orders_by_entry_number_and_ignores_case(tmp_path):
    (tmp_path / "o.pls").write_text(
        "; comment\n[Playlist]\nfile2=b.mp3\nFILE1=a.mp3\nLength1=30\nTitle2=B\nVersion=2\n",
        "utf-8",
    )
    a, b = pf.read_playlist(tmp_path / "o.pls")
    assert (a.path, a.duration, b.path, b.title) == (
        str(tmp_path / "a.mp3"),
        30.0,
        str(tmp_path / "b.mp3"),
        "B",
    )


def test_xspf_without_namespace_and_with_title(tmp_path):
    (tmp_path / "n.xspf").write_text(
        "<playlist><title>Road Trip</title><trackList><track><location>a%20b.mp3</location>"
        "<duration>1500</duration></track></trackList></playlist>",
        "utf-8",
    )
    parsed = parse_playlist(tmp_path / "n.xspf")
    assert parsed.title == "Road Trip"
    assert [(e.path, e.duration) for e in parsed.entries] == [(str(tmp_path / "a b.mp3"), 1.5)]


def test_unknown_extension_is_sniffed(tmp_path):
    (tmp_path / "list.txt").write_text("[playlist]\nFile1=a.mp3\n", "utf-8")
    (tmp_path / "list2").write_text("#EXTM3U\nb.mp3\n", "utf-8")
    assert paths(pf.read_playlist(tmp_path / "list.txt")) == [str(tmp_path / "a.mp3")]
    assert paths(pf.read_playlist(tmp_path / "list2")) == [str(tmp_path / "b.mp3")]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.m3u", None, "No such file"),
        ("bad.xspf", b"<playlist><trackList>", "invalid XSPF"),
        ("html.xspf", b"<html></html>", "not an XSPF playlist"),
        ("bomb.xspf", b'<!DOCTYPE p [<!ENTITY a "aaaa">]><playlist>&a;</playlist>', "entity"),
        ("nohead.pls", b"File1=a.mp3\n", "no \\[playlist\\] section"),
        ("bin.m3u", b"ID3\x03\x00\x00\x00\xff\xfb", "binary"),
        ("notes.txt", b"just some text\n", "not a recognised playlist"),
    ],
)
def test_invalid_files_raise_playlist_format_error(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PlaylistFormatError, match=reason) as info:
        pf.read_playlist(path)
    assert info.value.path == str(path)
    assert isinstance(info.value, ValueError)


def test_a_folder_is_not_a_playlist(tmp_path):
    (tmp_path / "d.m3u").mkdir()
    with pytest.raises(PlaylistFormatError):
        pf.read_playlist(tmp_path / "d.m3u")
