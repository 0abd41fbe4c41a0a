"""Training data: items from folders and library DBs, splits, labels, the audio cache, samplers."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from audio_fixtures import write_audio
from musicssl.engine.decode import DecodeError
from musicssl.engine.library import Library
from musicssl.training.audio_cache import AudioCache
from musicssl.training.datasets import (
    TrackItem,
    from_folder,
    from_library,
    label_matrix,
    split,
    subsample_labels,
    vocabulary,
)
from musicssl.training.sampler import (
    SOURCE_ALBUM,
    SOURCE_ARTIST,
    SOURCE_PLAYLIST,
    SOURCE_SELF,
    CropDataset,
    PairDataset,
    TwoViewDataset,
    excerpts_of,
)

RATE = 8000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> Path:
    """Two tagged albums (mp3/flac/ogg) and one untagged folder, 1.5 s per file."""
    root = tmp_path_factory.mktemp("music")
    albums = {
        "A": ("Artist A", "First Album", "Rock"),
        "B": ("Artist B", "Second Album", "Jazz; Blues"),
    }
    seed = 0
    for folder in (*albums, "loose"):
        (root / folder).mkdir()
    for folder, (artist, album, genre) in albums.items():
        for k, ext in enumerate((".mp3", ".flac", ".ogg")):
            seed += 1
            write_audio(
                root / folder / f"{k}{ext}",
                seconds=1.5,
                seed=seed,
                tags={"artist": artist, "album": album, "genre": genre, "title": f"t{k}"},
            )
    for k in range(2):
        write_audio(root / "loose" / f"x{k}.wav", seconds=1.5, seed=10 + k)
    return root


# -- items --------------------------------------------------------------------------------------


def test_from_folder_reads_genres_albums_and_folder_fallback(music):
    items = from_folder(music)
    assert len(items) == 8
    by_name = {os.path.relpath(i.path, music): i for i in items}
    a0 = by_name[os.path.join("A", "0.mp3")]
    assert a0.labels == {"Rock": 1.0}
    assert a0.artist == "Artist A"
    assert a0.album == by_name[os.path.join("A", "2.ogg")].album  # one album across formats
    assert by_name[os.path.join("B", "1.flac")].labels == {"Jazz": 1.0, "Blues": 1.0}
    assert a0.album != by_name[os.path.join("B", "0.mp3")].album
    loose = [by_name[os.path.join("loose", f"x{k}.wav")] for k in range(2)]
    assert loose[0].labels == {} and loose[0].album == loose[1].album
    assert loose[0].album.startswith("folder:")
    assert all(not i.labels for i in from_folder(music, tags_from_genre=False))


def test_from_library_labels_playlists_and_excluded_tracks(music, tmp_path):
    root = tmp_path / "lib"
    shutil.copytree(music, root)
    (root / "broken.mp3").write_bytes(b"this is not audio at all" * 10)
    gone = root / "loose" / "x1.wav"
    db_path = tmp_path / "lib.db"
    with Library(db_path) as lib:
        lib.scan([root])
        ids = {os.path.relpath(t["path"], root): t["id"] for t in lib.tracks()}
        a0, a1, b0 = (
            ids[os.path.join("A", "0.mp3")],
            ids[os.path.join("A", "1.flac")],
            ids[os.path.join("B", "0.mp3")],
        )
        lib.set_user_tag(a0, "rock", positive=False)  # the user overrides the file genre
        lib.set_user_tag(a1, "Live", positive=True)
        playlist = lib.create_playlist("mix", [a0, b0])
        gone.unlink()
        lib.rescan()
    items = from_library(db_path)
    paths = {os.path.relpath(i.path, root) for i in items}
    assert "broken.mp3" not in paths  # status error
    assert os.path.join("loose", "x1.wav") not in paths  # missing
    assert len(items) == 7
    by_id = {i.track_id: i for i in items}
    assert by_id[a0].labels == {"Rock": 0.0}
    assert by_id[a1].labels == {"Rock": 1.0, "Live": 1.0}
    assert by_id[a0].playlists == [playlist] and by_id[b0].playlists == [playlist]
    assert by_id[a1].playlists == []
    assert by_id[a0].album == by_id[a1].album != by_id[b0].album
    assert by_id[a0].artist == "Artist A"
    # Only user tags: file genres are gone, the user's yes/no remain.
    user_only = {i.track_id: i.labels for i in from_library(db_path, sources=("user",))}
    assert user_only[a0] == {"rock": 0.0} and user_only[b0] == {}
    with pytest.raises(ValueError):
        from_library(db_path, sources=("files",))


def test_vocabulary_counts_positives_case_insensitively():
    items = [
        TrackItem("a", labels={"Rock": 1.0}),
        TrackItem("b", labels={"rock": 1.0, "Pop": 0.0}),
        TrackItem("c", labels={"Rock": 1.0, "pop": 0.0, "Jazz": 1.0}),
    ]
    assert vocabulary(items) == ["Jazz", "Rock"]  # "Pop" has only negatives
    assert vocabulary(items, min_count=2) == ["Rock"]


def test_label_matrix_marks_known_labels_only():
    items = [
        TrackItem("a", labels={"rock": 1.0, "jazz": 0.0}),
        TrackItem("b", labels={}),
        TrackItem("c", labels={"Jazz": 1.0, "other": 1.0}),
    ]
    targets, mask = label_matrix(items, ["Jazz", "Rock"])
    assert targets.dtype == np.float32 and mask.dtype == bool
    np.testing.assert_array_equal(targets, [[0, 1], [0, 0], [1, 0]])
    np.testing.assert_array_equal(mask, [[True, True], [False, False], [True, False]])


# -- splits and limited labels --------------------------------------------------------------------


def _albums(n_albums: int, max_tracks: int, with_none: int = 0) -> list[TrackItem]:
    """Albums of uneven sizes (1..max_tracks) by 20 artists, plus tracks with no album."""
    items = []
    for a in range(n_albums):
        for t in range(1 + (a * 7) % max_tracks):
            items.append(TrackItem(f"/m/{a}/{t}.mp3", album=f"alb{a}", artist=f"art{a % 20}"))
    items += [TrackItem(f"/m/none/{k}.mp3") for k in range(with_none)]
    return items


def test_split_keeps_albums_whole_and_is_reproducible():
    items = _albums(60, 8, with_none=10)
    train, val, test = split(items, (0.8, 0.1, 0.1), by="album", seed=3)
    assert len(train) + len(val) + len(test) == len(items)
    owners = {}
    for part, members in enumerate((train, val, test)):
        for item in members:
            if item.album is not None:
                assert owners.setdefault(item.album, part) == part
    n = len(items)
    assert abs(len(train) / n - 0.8) < 0.05 and abs(len(val) / n - 0.1) < 0.05
    assert split(items, by="album", seed=3) == (train, val, test)
    assert split(items, by="album", seed=4) != (train, val, test)
    # Tracks without an album are their own groups, so they spread over the parts.
    loose = [i for i in items if i.album is None]
    assert [len(part) for part in split(loose, by="album")] == [8, 1, 1]
    a_train, a_val, a_test = split(items, by="artist", seed=0)
    artists = [{i.artist for i in part} - {None} for part in (a_train, a_val, a_test)]
    assert not (artists[0] & artists[1]) and not (artists[0] & artists[2])
    with pytest.raises(ValueError):
        split(items, by="genre")


def test_subsample_labels_keeps_the_fraction_and_copies():
    items = [TrackItem(f"/t/{k}", labels={"x": 1.0}) for k in range(200)]
    items += [TrackItem(f"/u/{k}") for k in range(50)]
    ten = subsample_labels(items, 0.1, seed=1)
    assert len(ten) == 250
    assert sum(1 for i in ten if i.labels) == 20
    assert all(i.labels for i in items[:200])  # the input is untouched
    assert [i.path for i in ten] == [i.path for i in items]
    assert subsample_labels(items, 0.1, seed=1) == ten
    assert sum(1 for i in subsample_labels(items, 0.001) if i.labels) == 1
    assert sum(1 for i in subsample_labels(items, 0.0) if i.labels) == 0


# -- audio cache ----------------------------------------------------------------------------------


def test_cache_decodes_once_as_int16_at_the_rate(music, tmp_path):
    path = music / "A" / "0.mp3"
    cache = AudioCache(tmp_path / "cache", RATE)
    first = cache.get(path)
    assert first.dtype == np.int16 and first.ndim == 1
    assert abs(first.shape[0] - 1.5 * RATE) < 0.05 * RATE
    assert np.abs(first).max() > 1000  # real audio, not silence
    entry = cache.entry_path(path)
    stamp = entry.stat().st_mtime_ns
    assert cache.get(path) is first and cache.decodes == 1
    with pytest.raises((ValueError, TypeError)):
        first[0] = 1  # read-only map
    again = AudioCache(tmp_path / "cache", RATE)  # a new run reuses the file
    np.testing.assert_array_equal(again.get(path), first)
    assert again.decodes == 0 and entry.stat().st_mtime_ns == stamp
    other_rate = AudioCache(tmp_path / "cache", 16000)
    assert abs(other_rate.get(path).shape[0] - 1.5 * 16000) < 800 and other_rate.decodes == 1


def test_cache_redecodes_changed_files_and_remembers_failures(music, tmp_path):
    track = tmp_path / "t.flac"
    shutil.copy(music / "A" / "1.flac", track)
    cache = AudioCache(tmp_path / "cache", RATE)
    old = np.array(cache.get(track))
    shutil.copy(music / "B" / "1.flac", track)
    os.utime(track, ns=(1_000_000_000, 1_000_000_000))
    new = cache.get(track)
    assert cache.decodes == 2 and not np.array_equal(old[:1000], np.asarray(new[:1000]))

    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(DecodeError):
        cache.get(bad)
    decodes = cache.decodes
    with pytest.raises(DecodeError):
        AudioCache(tmp_path / "cache", RATE).get(bad)  # remembered on disk: no second decode
    assert cache.decodes == decodes
    failures = cache.warm([track, bad, tmp_path / "nope.mp3"], workers=2)
    assert [p for p, _ in failures] == [str(bad), str(tmp_path / "nope.mp3")]


# -- samplers -------------------------------------------------------------------------------------


class ArrayCache:
    """Stands in for AudioCache in sampler tests: path -> a known int16 ramp."""

    def __init__(self, lengths: dict[str, int]) -> None:
        self.arrays = {
            p: (np.arange(n) % 30000 + 1).astype(np.int16) * (1 if k % 2 else -1)
            for k, (p, n) in enumerate(lengths.items())
        }

    def get(self, path):
        return self.arrays[str(path)]


def _items_and_cache(n=6, length=1000):
    items = [TrackItem(f"/x/{k}", labels={"a": 1.0} if k % 2 else {}) for k in range(n)]
    return items, ArrayCache({i.path: length + 10 * k for k, i in enumerate(items)})


def test_crop_dataset_shapes_labels_and_centre_crop():
    items, cache = _items_and_cache()
    ds = CropDataset(items, cache, 300, vocab=["a"], deterministic=True)
    sample = ds[1]
    assert sample["x"].shape == (300,) and sample["x"].dtype == torch.float32
    assert sample["index"] == 1
    assert sample["targets"].tolist() == [1.0] and sample["mask"].tolist() == [True]
    assert ds[0]["mask"].tolist() == [False]
    full = cache.get(items[1].path)
    start = (len(full) - 300) // 2
    np.testing.assert_allclose(sample["x"].numpy(), full[start : start + 300] / 32767.0)
    short = CropDataset(items, cache, 5000, deterministic=True)[0]["x"]
    assert short.shape == (5000,) and torch.all(short[1000:] == 0)  # zero-padded tail


def test_random_crops_are_reproducible_and_change_per_epoch():
    items, cache = _items_and_cache()
    a = CropDataset(items, cache, 100, seed=5)
    b = CropDataset(items, cache, 100, seed=5)
    first = [a[i]["x"] for i in range(6)]
    assert all(torch.equal(x, b[i]["x"]) for i, x in enumerate(first))
    second = [a[i]["x"] for i in range(6)]  # next draw: other crops
    assert not all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    a.set_epoch(3)
    b.set_epoch(3)
    assert torch.equal(a[2]["x"], b[2]["x"])
    assert not torch.equal(CropDataset(items, cache, 100, seed=6)[0]["x"], first[0])
    views = TwoViewDataset(items, cache, 100, seed=1)[4]
    assert views["x1"].shape == views["x2"].shape == (100,)
    assert not torch.equal(views["x1"], views["x2"])


def test_pair_dataset_prefers_playlists_then_album_then_artist_then_self():
    items = [
        TrackItem("/p/0", album="al1", artist="ar", playlists=[7, 9]),
        TrackItem("/p/1", album="al1", artist="ar", playlists=[7, 9]),
        TrackItem("/p/2", album="al1", artist="ar", playlists=[7]),
        TrackItem("/p/3", album="al1", artist="ar"),  # album partner
        TrackItem("/p/4", album="al2", artist="AR"),  # only the artist (case-insensitive)
        TrackItem("/p/5", album="al3", artist="solo"),  # nothing: itself
        TrackItem("/p/6", album="al4", playlists=[99]),  # its playlist has no other member
    ]
    cache = ArrayCache({i.path: 500 for i in items})
    ds = PairDataset(items, cache, 100, seed=0, max_playlist_share=1.0)
    for _ in range(20):
        s = ds[0]
        assert s["source"] == SOURCE_PLAYLIST and s["index2"] in (1, 2)
        assert ds[3]["source"] == SOURCE_ALBUM and ds[3]["index2"] in (0, 1, 2)
        assert ds[4]["source"] == SOURCE_ARTIST and ds[4]["index2"] in (0, 1, 2, 3)
    assert ds[5]["source"] == SOURCE_SELF and ds[5]["index2"] == 5
    assert ds[6]["source"] == SOURCE_SELF
    top = PairDataset(items, cache, 100, mode="top", max_playlist_share=1.0)
    assert {top[0]["index2"] for _ in range(10)} == {1}  # shares two playlists with 0
    sample = ds[2]
    assert sample["x1"].shape == sample["x2"].shape == (100,)
    g1, g2 = set(sample["groups1"].tolist()) - {-1}, set(sample["groups2"].tolist()) - {-1}
    assert g1 & g2  # a shared playlist/album group id
    # A playlist holding most of the dataset says nothing: it is ignored.
    everything = [dataclasses.replace(i, playlists=[1]) for i in items]
    crowded = PairDataset(everything, cache, 100, max_playlist_share=0.25)
    assert crowded[2]["source"] == SOURCE_ALBUM and crowded[2]["index2"] in (0, 1, 3)
    assert (
        PairDataset(items, cache, 100, seed=3)[0]["index2"]
        == PairDataset(items, cache, 100, seed=3)[0]["index2"]
    )


def test_excerpts_cover_the_track_without_overlap():
    items, cache = _items_and_cache(n=1, length=1000)
    ex = excerpts_of(cache, items[0], 300)
    assert ex.shape == (3, 300) and ex.dtype == np.float32  # tail of 100 < 150 is dropped
    np.testing.assert_allclose(ex[1], cache.get("/x/0")[300:600] / 32767.0)
    assert excerpts_of(cache, items[0], 400).shape == (3, 400)  # tail of 200 >= 200 kept
    assert excerpts_of(cache, items[0], 5000).shape == (1, 5000)  # short track: one, padded
    assert excerpts_of(cache, items[0], 100, max_excerpts=4).shape == (4, 100)
