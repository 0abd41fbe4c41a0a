"""Removing a library folder, and the user-label counts for fine-tuning: real audio, real SQLite,
real hnswlib."""

from __future__ import annotations

import pytest
from audio_fixtures import write_audio
from musicssl.engine import embeddings, playlists
from musicssl.engine.folders import FolderNotFound
from musicssl.engine.index import read_state
from musicssl.engine.library import Library


@pytest.fixture
def library(tmp_path):
    """Folders rock/ (3 tracks + an .m3u of them) and jazz/ (2 tracks), analysed."""
    music = tmp_path / "music"
    for name, n in (("rock", 3), ("jazz", 2)):
        (music / name).mkdir(parents=True)
        for i in range(n):
            write_audio(music / name / f"{name}{i}.wav", seconds=2.0, seed=i + 10 * n)
    (music / "rock" / "best.m3u").write_text("rock0.wav\nrock1.wav\n")
    lib = Library(tmp_path / "lib.db")
    lib.scan([music / "rock", music / "jazz"])
    assert lib.analyze().analyzed == 5
    yield lib
    lib.close()


def ids_in(lib: Library, folder: str) -> list[int]:
    return [t["id"] for t in lib.tracks([f"path~{folder}"])]


def test_remove_folder_forgets_its_tracks_everywhere(library, tmp_path):
    rock, jazz = str(tmp_path / "music" / "rock"), str(tmp_path / "music" / "jazz")
    rock_ids, jazz_ids = ids_in(library, "/rock/"), ids_in(library, "/jazz/")
    library.set_user_tag(rock_ids[0], "loud")
    library.set_user_tag(rock_ids[1], "calm", positive=False)
    mix = library.create_playlist("mix", [rock_ids[2], jazz_ids[0], rock_ids[0]])
    model_id = library.index_model_id()
    assert library.similar([jazz_ids[0]], n=10)  # the index exists and is saved

    plan = library.folder_removal(rock)
    assert (plan.tracks, plan.user_tagged, plan.playlist_entries, plan.playlists) == (3, 2, 2, 1)
    assert library.count() == 5  # planning changes nothing

    done = library.remove_folder(rock)
    assert done == plan
    assert library.folders() == [jazz]
    assert sorted(t["id"] for t in library.tracks()) == sorted(jazz_ids)
    assert (tmp_path / "music" / "rock" / "rock0.wav").exists()  # files are never touched
    assert library.db.execute("SELECT count(*) FROM tags WHERE source = 'user'").fetchone()[0] == 0
    assert embeddings.count(library.db, model_id) == 2
    # The user's playlist keeps its other entry; the one imported from rock/best.m3u is gone.
    assert [p["name"] for p in library.playlists()] == ["mix"]
    assert [i["track_id"] for i in playlists.items(library.db, mix)] == [jazz_ids[0]]
    # The saved index was updated in place: it matches the table (no rebuild) and never
    # returns a removed track.
    state = read_state(library.db, model_id)
    assert state is not None and state.count == 2
    assert state.checksum == embeddings.checksum(library.db, model_id)
    assert [r.track_id for r in library.similar([jazz_ids[0]], n=10)] == [jazz_ids[1]]
    # A rescan does not bring the folder back.
    library.rescan()
    assert library.count() == 2


def test_nested_folders_keep_tracks_another_folder_covers(library, tmp_path):
    music = tmp_path / "music"
    library.scan([music])  # the parent folder too: rock/ and jazz/ are now nested in it
    assert library.remove_folder(music / "rock").tracks == 0
    assert library.count() == 5
    (music / "loose.wav").write_bytes((music / "jazz" / "jazz0.wav").read_bytes())
    library.scan([music])
    removed = library.remove_folder(music)
    assert removed.tracks == 4  # rock/ (no longer a folder of its own) and the loose file
    assert library.folders() == [str(music / "jazz")] and library.count() == 2


def test_unknown_folder_is_a_user_error(library, tmp_path):
    with pytest.raises(FolderNotFound, match="not a library folder"):
        library.remove_folder(tmp_path / "elsewhere")


def test_user_label_stats_count_tracks_labels_and_tags(library):
    ids = [t["id"] for t in library.tracks(order_by="id")]
    empty = library.user_label_stats()
    assert (empty.tracks, empty.positive, empty.negative, empty.tags) == (0, 0, 0, [])
    library.set_user_tag(ids[0], "calm")
    library.set_user_tag(ids[1], "Calm")
    library.set_user_tag(ids[1], "loud", positive=False)
    library.set_user_tag(ids[2], "loud")
    library.set_user_tag(ids[3], "loud", positive=False)
    stats = library.user_label_stats()
    assert (stats.tracks, stats.positive, stats.negative) == (4, 3, 2)
    assert [(t.tag.lower(), t.positive, t.negative) for t in stats.tags] == [
        ("calm", 2, 0),
        ("loud", 1, 2),
    ]
    # Tracks training cannot read (missing files) are not counted.
    library.db.execute("UPDATE tracks SET missing = 1 WHERE id = ?", [ids[3]])
    assert library.user_label_stats().negative == 1


def test_analysis_running_while_its_folder_is_removed_skips_those_tracks(tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    for i in range(3):
        write_audio(music / f"s{i}.wav", seconds=2.0, seed=i)
    with Library(tmp_path / "lib.db") as lib:
        lib.scan([music])
        other = Library(lib.path)  # the app's other connection, removing the folder meanwhile

        def progress(done: int, total: int, path: str) -> None:
            if done == 0:
                other.remove_folder(music)

        report = lib.analysis_job(progress=progress).run()
        other.close()
        assert report.total == 3 and report.analyzed == 0 and report.failed == 0
        assert lib.count() == 0
        assert lib.db.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 0
