"""Playlists in the library DB: editing, ordering, and moving them to and from playlist files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from musicssl.engine import playlist_formats as pf
from musicssl.engine import playlists as pl
from musicssl.engine.playlists import PlaylistNotFound


def add_track(db, path, title=None, artist=None, album=None, duration=None):
    cursor = db.execute(
        "INSERT INTO tracks (path, title, artist, album, duration, status, added_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, 'new', 0, 0)",
        (str(path), title, artist, album, duration),
    )
    return cursor.lastrowid


@pytest.fixture
def tracks(db, tmp_path):
    """Five library tracks with placeholder files under music/; returns their ids."""
    folder = tmp_path / "music" / "Artist, The"
    folder.mkdir(parents=True)
    ids = []
    for n in range(5):
        path = folder / f"{n:02d} Söng #{n}.mp3"
        path.touch()
        ids.append(add_track(db, path, f"Song {n}", "Artist, The", "Album", 60.0 + n))
    return ids


def track_ids(db, playlist_id):
    return [item["track_id"] for item in pl.items(db, playlist_id)]


def stored_positions(db, playlist_id):
    rows = db.execute(
        "SELECT position FROM playlist_items WHERE playlist_id = ? ORDER BY position",
        (playlist_id,),
    ).fetchall()
    return [r[0] for r in rows]


def updated_at(db, playlist_id):
    return db.execute("SELECT updated_at FROM playlists WHERE id = ?", (playlist_id,)).fetchone()[0]


def zero_updated_at(db, playlist_id):
    db.execute("UPDATE playlists SET updated_at = 0 WHERE id = ?", (playlist_id,))


@pytest.fixture
def full(db, tracks):
    """A playlist holding the five tracks in order."""
    playlist_id = pl.create(db, "Full")
    pl.add_tracks(db, playlist_id, tracks)
    return playlist_id


# ---------------------------------------------------------------------------------------------
# CRUD
# ---------------------------------------------------------------------------------------------


def test_create_list_rename_delete(db, tracks):
    a = pl.create(db, "  Road trip ")
    b = pl.create(db, "ambient")
    pl.add_tracks(db, a, tracks[:3])
    listed = {p["id"]: p for p in pl.list_playlists(db)}
    assert [p["name"] for p in pl.list_playlists(db)] == ["ambient", "Road trip"]  # by name
    assert (listed[a]["count"], listed[a]["duration"]) == (3, pytest.approx(183.0))
    assert (listed[b]["count"], listed[b]["duration"]) == (0, 0.0)
    assert listed[a]["source_path"] is None

    pl.rename(db, a, "Holiday")
    assert {p["name"] for p in pl.list_playlists(db)} == {"ambient", "Holiday"}

    pl.delete(db, b)
    assert [p["id"] for p in pl.list_playlists(db)] == [a]


def test_empty_names_are_refused(db):
    with pytest.raises(ValueError, match="empty"):
        pl.create(db, "   ")
    playlist_id = pl.create(db, "x")
    with pytest.raises(ValueError):
        pl.rename(db, playlist_id, "")


def test_duration_counts_unknown_durations_as_zero_and_duplicates_twice(db, tmp_path):
    known = add_track(db, tmp_path / "a.mp3", duration=10.0)
    unknown = add_track(db, tmp_path / "b.mp3")
    playlist_id = pl.create(db, "p")
    pl.add_tracks(db, playlist_id, [known, unknown, known])
    [row] = pl.list_playlists(db)
    assert (row["count"], row["duration"]) == (3, 20.0)


def test_items_carry_track_fields_in_order(db, tracks, tmp_path):
    playlist_id = pl.create(db, "p")
    pl.add_tracks(db, playlist_id, [tracks[2], tracks[0]])
    first, second = pl.items(db, playlist_id)
    assert first == {
        "position": 0,
        "track_id": tracks[2],
        "path": str(tmp_path / "music" / "Artist, The" / "02 Söng #2.mp3"),
        "title": "Song 2",
        "artist": "Artist, The",
        "album": "Album",
        "duration": 62.0,
    }
    assert (second["position"], second["track_id"]) == (1, tracks[0])


@pytest.mark.parametrize(
    "call",
    [
        lambda db: pl.rename(db, 999, "x"),
        lambda db: pl.delete(db, 999),
        lambda db: pl.items(db, 999),
        lambda db: pl.add_tracks(db, 999, []),
        lambda db: pl.remove_positions(db, 999, []),
        lambda db: pl.move(db, 999, [], 0),
        lambda db: pl.export(db, 999, "/nonexistent/x.m3u8"),
    ],
)
def test_unknown_playlist_raises_playlist_not_found(db, call):
    with pytest.raises(PlaylistNotFound) as info:
        call(db)
    assert isinstance(info.value, KeyError)
    assert str(info.value) == "no playlist with id 999"


def test_delete_cascades_to_items_but_keeps_tracks(db, full):
    pl.delete(db, full)
    assert db.execute("SELECT COUNT(*) FROM playlist_items").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM tracks").fetchone()[0] == 5


# ---------------------------------------------------------------------------------------------
# Adding, removing, moving
# ---------------------------------------------------------------------------------------------


def test_add_appends_inserts_and_allows_duplicates(db, tracks):
    t0, t1, t2, t3, t4 = tracks
    playlist_id = pl.create(db, "p")
    assert pl.add_tracks(db, playlist_id, [t0, t1]) == [0, 1]
    assert pl.add_tracks(db, playlist_id, [t2, t3], position=1) == [1, 2]
    assert track_ids(db, playlist_id) == [t0, t2, t3, t1]
    pl.add_tracks(db, playlist_id, [t0], position=0)
    pl.add_tracks(db, playlist_id, [t4], position=99)  # past the end appends
    assert track_ids(db, playlist_id) == [t0, t0, t2, t3, t1, t4]
    assert stored_positions(db, playlist_id) == list(range(6))


def test_add_unknown_track_adds_nothing(db, full, tracks):
    with pytest.raises(ValueError, match=r"no tracks in the library with ids \[12345\]"):
        pl.add_tracks(db, full, [tracks[0], 12345], position=0)
    assert track_ids(db, full) == tracks
    with pytest.raises(ValueError):
        pl.add_tracks(db, full, [tracks[0]], position=-1)


@pytest.mark.parametrize(
    ("positions", "to", "expected", "landed"),
    [
        ([0], 5, [1, 2, 3, 4, 0], [4]),  # first to last
        ([4], 0, [4, 0, 1, 2, 3], [0]),  # last to first
        ([0], 2, [1, 0, 2, 3, 4], [1]),  # drop before the item now at 2
        ([3], 1, [0, 3, 1, 2, 4], [1]),
        ([0, 2, 4], 5, [1, 3, 0, 2, 4], [2, 3, 4]),  # several, to the end
        ([4, 1, 3], 0, [1, 3, 4, 0, 2], [0, 1, 2]),  # several to the start, kept in order
        ([1, 3], 3, [0, 2, 1, 3, 4], [2, 3]),  # a target that is itself moved
        ([2], 2, [0, 1, 2, 3, 4], [2]),  # no-op
        ([0, 1, 2, 3, 4], 0, [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]),
        ([1], 100, [0, 2, 3, 4, 1], [4]),
    ],
)
def test_move(db, full, tracks, positions, to, expected, landed):
    assert pl.move(db, full, positions, to) == landed
    assert track_ids(db, full) == [tracks[i] for i in expected]
    assert stored_positions(db, full) == list(range(5))


def test_move_out_of_range_changes_nothing(db, full, tracks):
    with pytest.raises(IndexError):
        pl.move(db, full, [0, 5], 2)
    with pytest.raises(ValueError):
        pl.move(db, full, [0], -1)
    assert track_ids(db, full) == tracks


def test_remove_positions_closes_the_gaps(db, full, tracks):
    pl.remove_positions(db, full, [3, 0, 3])
    assert track_ids(db, full) == [tracks[1], tracks[2], tracks[4]]
    assert stored_positions(db, full) == [0, 1, 2]
    with pytest.raises(IndexError):
        pl.remove_positions(db, full, [1, 3])
    assert track_ids(db, full) == [tracks[1], tracks[2], tracks[4]]
    pl.remove_positions(db, full, [0, 1, 2])
    assert pl.items(db, full) == []


def test_a_track_deleted_from_the_library_leaves_a_usable_playlist(db, full, tracks):
    db.execute("DELETE FROM tracks WHERE id = ?", (tracks[1],))  # cascades, leaving a gap
    assert [i["position"] for i in pl.items(db, full)] == [0, 1, 2, 3]
    pl.move(db, full, [3], 0)
    assert track_ids(db, full) == [tracks[4], tracks[0], tracks[2], tracks[3]]
    assert stored_positions(db, full) == [0, 1, 2, 3]
    db.execute("DELETE FROM tracks WHERE id = ?", (tracks[0],))
    pl.add_tracks(db, full, [tracks[2]], position=1)
    assert track_ids(db, full) == [tracks[4], tracks[2], tracks[2], tracks[3]]
    assert stored_positions(db, full) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "edit",
    [
        lambda db, p, t: pl.rename(db, p, "new"),
        lambda db, p, t: pl.add_tracks(db, p, [t[0]]),
        lambda db, p, t: pl.remove_positions(db, p, [0]),
        lambda db, p, t: pl.move(db, p, [0], 3),
    ],
)
def test_edits_bump_updated_at(db, full, tracks, edit):
    zero_updated_at(db, full)
    edit(db, full, tracks)
    assert updated_at(db, full) > 0


def test_a_failed_edit_rolls_back(db, full, tracks, monkeypatch):
    def fail(*args):
        raise RuntimeError("crash between the two renumbering steps")

    monkeypatch.setattr(pl, "_touch", fail)
    with pytest.raises(RuntimeError):
        pl.move(db, full, [0], 5)
    assert not db.conn.in_transaction
    assert track_ids(db, full) == tracks
    assert stored_positions(db, full) == list(range(5))


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["m3u8", "m3u", "xspf", "pls"])
@pytest.mark.parametrize("relative", [True, False])
def test_export_then_read_back_gives_the_same_tracks(db, full, tracks, tmp_path, fmt, relative):
    pl.move(db, full, [4], 0)
    pl.add_tracks(db, full, [tracks[2]])  # a duplicate
    out = tmp_path / "exports"
    out.mkdir()
    dest = pl.export(db, full, out / f"full.{fmt}", relative=relative)
    assert dest == out / f"full.{fmt}"
    assert os.listdir(out) == [f"full.{fmt}"]  # nothing else left behind
    back = pf.read_playlist(dest)
    items = pl.items(db, full)
    assert [e.path for e in back] == [i["path"] for i in items]
    assert [e.title for e in back] == [i["title"] for i in items]
    text = dest.read_text("utf-8")
    assert ("../music/" in text) == relative


def test_export_fmt_overrides_extension(db, full, tmp_path):
    dest = pl.export(db, full, tmp_path / "list.txt", fmt="pls")
    assert dest.read_text("utf-8").startswith("[playlist]")
    with pytest.raises(ValueError, match="unknown playlist format"):
        pl.export(db, full, tmp_path / "list.txt", fmt="asx")


def test_export_import_round_trip(db, full, tracks, tmp_path):
    pl.move(db, full, [0, 1], 5)
    dest = pl.export(db, full, tmp_path / "round.xspf")
    result = pl.import_file(db, dest)
    assert result.playlist_id != full
    assert (result.matched, result.missing, result.skipped_urls) == (5, [], 0)
    assert track_ids(db, result.playlist_id) == track_ids(db, full)
    names = {p["id"]: p["name"] for p in pl.list_playlists(db)}
    assert names[result.playlist_id] == "Full"  # the title stored in the XSPF


# ---------------------------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------------------------


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def test_import_m3u_with_relative_paths_from_another_folder(db, tracks, tmp_path):
    source = write(
        tmp_path / "elsewhere" / "lists" / "mix.m3u",
        "#EXTM3U\n"
        "#EXTINF:60,Artist, The - Song 0\n"
        "../../music/Artist, The/00 Söng #0.mp3\n"
        "http://radio.example/live\n"
        "../../music/Artist, The/03 Söng #3.mp3\n"
        "../../music/not in library.mp3\n"
        "../../music/Artist, The/00 Söng #0.mp3\n"
        "../../music/not in library.mp3\n",
    )
    result = pl.import_file(db, source)
    assert result.matched == 3
    assert result.missing == [str(tmp_path / "music" / "not in library.mp3")]  # once
    assert result.skipped_urls == 1
    assert not result.unchanged
    assert track_ids(db, result.playlist_id) == [tracks[0], tracks[3], tracks[0]]
    [row] = pl.list_playlists(db)
    assert row["name"] == "mix"  # the file's stem
    assert row["source_path"] == str(source)


def test_import_latin1_windows_playlist_with_backslashes(db, tmp_path):
    track = add_track(db, tmp_path / "music" / "Café" / "Été.mp3")
    source = write(tmp_path / "old.m3u", "music\\Café\\Été.mp3\r\n", encoding="latin-1")
    result = pl.import_file(db, source, name="Old favourites")
    assert (result.matched, result.missing) == (1, [])
    assert track_ids(db, result.playlist_id) == [track]
    assert pl.list_playlists(db)[0]["name"] == "Old favourites"


def test_import_with_bom_and_file_uris(db, tracks, tmp_path):
    path = db.execute("SELECT path FROM tracks WHERE id = ?", (tracks[1],)).fetchone()[0]
    source = tmp_path / "bom.m3u8"
    source.write_bytes(b"\xef\xbb\xbf" + f"{Path(path).as_uri()}\n".encode())
    result = pl.import_file(db, source)
    assert track_ids(db, result.playlist_id) == [tracks[1]]


def test_reimport_updates_the_playlist_in_place(db, tracks, tmp_path):
    music = "music/Artist, The"
    source = write(tmp_path / "mix.m3u8", f"{music}/00 Söng #0.mp3\n{music}/01 Söng #1.mp3\n")
    first = pl.import_file(db, source)
    pl.rename(db, first.playlist_id, "Renamed by the user")
    write(source, f"{music}/04 Söng #4.mp3\n")
    os.utime(source, (1_000_000, 1_000_000))

    second = pl.import_file(db, source)
    assert second.playlist_id == first.playlist_id
    assert track_ids(db, first.playlist_id) == [tracks[4]]
    [row] = pl.list_playlists(db)
    assert row["name"] == "Renamed by the user"  # kept unless a name is passed
    mtime = db.execute(
        "SELECT source_mtime FROM playlists WHERE id = ?", (first.playlist_id,)
    ).fetchone()[0]
    assert mtime == 1_000_000

    pl.import_file(db, source, name="Given")
    assert [p["name"] for p in pl.list_playlists(db)] == ["Given"]


def test_import_only_if_changed(db, tracks, tmp_path):
    source = write(tmp_path / "mix.m3u8", "music/Artist, The/00 Söng #0.mp3\n")
    os.utime(source, (2_000_000, 2_000_000))
    first = pl.import_file(db, source, only_if_changed=True)  # new: always imported
    assert (first.unchanged, first.matched) == (False, 1)

    write(source, "music/Artist, The/01 Söng #1.mp3\n")
    os.utime(source, (2_000_000, 2_000_000))  # same mtime: skipped without reading
    skipped = pl.import_file(db, source, only_if_changed=True)
    assert skipped.unchanged and skipped.playlist_id == first.playlist_id
    assert track_ids(db, first.playlist_id) == [tracks[0]]

    os.utime(source, (2_000_001, 2_000_001))
    again = pl.import_file(db, source, only_if_changed=True)
    assert not again.unchanged
    assert track_ids(db, first.playlist_id) == [tracks[1]]
    assert len(pl.list_playlists(db)) == 1


def test_import_uses_the_same_source_for_equivalent_paths(db, tracks, tmp_path):
    source = write(tmp_path / "lists" / "mix.pls", "[playlist]\nFile1=../music/x.mp3\n")
    pl.import_file(db, source)
    pl.import_file(db, tmp_path / "lists" / ".." / "lists" / "mix.pls")
    assert len(pl.list_playlists(db)) == 1


def test_import_invalid_file_changes_nothing(db, tmp_path):
    bad = write(tmp_path / "bad.xspf", "<playlist><trackList>")
    with pytest.raises(pf.PlaylistFormatError):
        pl.import_file(db, bad)
    with pytest.raises(pf.PlaylistFormatError):
        pl.import_file(db, tmp_path / "missing.m3u")
    assert pl.list_playlists(db) == []
