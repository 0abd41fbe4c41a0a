"""Corpus recipe plumbing: which package files count as music, and what the manifest keeps."""

from __future__ import annotations

import zipfile
from pathlib import Path

from audio_fixtures import write_audio
from musicssl.engine.library import Library
from musicssl.engine.metadata import read_metadata
from musicssl.training.corpus.build import BuildConfig, build
from musicssl.training.corpus.debian_soundtracks import _candidates
from musicssl.training.corpus.manifest import (
    Entry,
    read_manifest,
    tag_audio_file,
    to_items,
    write_manifest,
)
from musicssl.training.datasets import album_key


def test_music_is_found_in_music_folders_and_zip_archives(tmp_path):
    root = tmp_path / "unpacked"
    (root / "usr/share/game/music").mkdir(parents=True)
    (root / "usr/share/game/sounds").mkdir(parents=True)
    (root / "usr/share/game/music/theme.ogg").write_bytes(b"a")
    (root / "usr/share/game/music/readme.txt").write_bytes(b"b")
    (root / "usr/share/game/sounds/boom.ogg").write_bytes(b"c")
    with zipfile.ZipFile(root / "usr/share/game/data.pk3", "w") as z:
        z.writestr("sound/cdtracks/track1.ogg", b"d")
        z.writestr("sound/misc/click.ogg", b"e")
    with zipfile.ZipFile(root / "usr/share/game/public.zip", "w") as z:
        z.writestr("audio/music/menu.ogg", b"f")
        z.writestr("art/textures/menu.png", b"g")
    found = dict(_candidates(root, tmp_path / "staging"))
    assert sorted(found) == [
        "usr/share/game/data.pk3/sound/cdtracks/track1.ogg",
        "usr/share/game/music/theme.ogg",
        "usr/share/game/public.zip/audio/music/menu.ogg",
    ]
    assert found["usr/share/game/public.zip/audio/music/menu.ogg"].read_bytes() == b"f"
    assert found["usr/share/game/data.pk3/sound/cdtracks/track1.ogg"].read_bytes() == b"d"


def _entry(path: str, tags: list[str]) -> Entry:
    return Entry(
        path=path,
        split="train",
        source="synth",
        album="Rock Sketches 1",
        album_artist="MusicSSL synthetic",
        artist="Someone",
        title="t",
        tags=tags,
        facets={"tempo": ["fast"], "instrument": ["guitar", "drums"]},
    )


def test_manifest_round_trip_and_items(tmp_path):
    entries = [_entry("a/x.ogg", ["rock", "fast"]), _entry("a/y.ogg", [])]
    write_manifest(tmp_path, entries)
    assert read_manifest(tmp_path) == entries
    items = to_items(tmp_path, entries)
    assert items[0].labels == {"rock": 1.0, "fast": 1.0} and items[1].labels == {}
    path = str((tmp_path / "a/x.ogg").resolve())
    assert items[0].album == album_key(path, "Rock Sketches 1", "MusicSSL synthetic", "Someone")
    assert to_items(tmp_path, entries, facet="instrument")[0].labels == {
        "guitar": 1.0,
        "drums": 1.0,
    }


def test_tags_written_into_the_file_are_what_a_scan_reads(tmp_path):
    path = write_audio(tmp_path / "x.ogg", seconds=1.0, tags={"genre": "Soundtrack"})
    tag_audio_file(path, _entry("x.ogg", ["rock", "guitar"]))
    meta = read_metadata(path)
    assert (meta.album, meta.album_artist, meta.artist) == (
        "Rock Sketches 1",
        "MusicSSL synthetic",
        "Someone",
    )
    assert sorted(meta.genres) == ["guitar", "rock"]
    tag_audio_file(path, _entry("x.ogg", []))  # a real soundtrack: its genre must go
    assert read_metadata(path).genres == []


def test_manifest_needs_a_build(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="corpus build"):
        read_manifest(Path(tmp_path))


def test_build_makes_a_library_of_the_training_audio_and_one_of_the_real_val_tracks(tmp_path):
    """train.db is what training reads; val.db (real val tracks only) is export's
    threshold library once the teacher has labelled it."""
    for k, (folder, name) in enumerate(
        [("train/real/game", "a"), ("val/real/game", "b"), ("val/synth/rock", "c")]
    ):
        (tmp_path / "audio" / folder).mkdir(parents=True)
        write_audio(tmp_path / "audio" / folder / f"{name}.wav", 2.0, seed=k)
    build(BuildConfig(root=tmp_path, real=False, synth=False))
    for db, expected in (("train.db", ["a.wav"]), ("val.db", ["b.wav"])):
        with Library(tmp_path / db) as library:
            assert [t["path"].rsplit("/", 1)[-1] for t in library.tracks()] == expected
