"""Analysis progress is reported per finished track, not per commit batch (the app's progress
bar and time estimate must move smoothly); real audio and a real SQLite file."""

from __future__ import annotations

from audio_fixtures import write_audio
from musicssl.engine.analysis import AnalysisOptions
from musicssl.engine.library import Library


def test_progress_per_track_before_the_batch_commits(tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    for i in range(6):
        write_audio(music / f"s{i}.flac", seconds=2.0, seed=i)
    with Library(tmp_path / "lib.db") as lib:
        lib.scan([music])
        watcher = Library(lib.path)  # another connection: sees only committed rows
        seen: list[tuple[int, int, int]] = []  # (done, total, analysed in the DB)

        def progress(done: int, total: int, path: str) -> None:
            seen.append((done, total, watcher.status()["analyzed"]))

        report = lib.analysis_job(AnalysisOptions(commit_every=16), progress).run()
        watcher.close()
    assert report.analyzed == 6
    # The total first, then every track in turn, all before the one commit of the run.
    assert seen == [(d, 6, 0) for d in range(7)]
