"""Analysis in a child process (what the app runs): results, per-track progress, cancel, errors,
a killed child, and a child whose parent went away. Real audio, real SQLite, real processes."""

from __future__ import annotations

import json
import os
import platform
import subprocess

import pytest
from audio_fixtures import write_audio
from musicssl.engine import embeddings
from musicssl.engine.analysis import AnalysisOptions
from musicssl.engine.analysis_process import (
    NICENESS,
    AnalysisCrashError,
    AnalysisProcessError,
    options_from_json,
    options_to_json,
)
from musicssl.engine.excerpts import ExcerptPolicy
from musicssl.engine.library import Library

N = 8


@pytest.fixture
def library(tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    for i in range(N):
        write_audio(music / f"s{i}.wav", seconds=3.0, seed=i)
    lib = Library(tmp_path / "lib.db")
    lib.scan([music])
    yield lib
    lib.close()


def test_options_survive_the_command_line():
    options = AnalysisOptions(policy=ExcerptPolicy("all", 3), device="cpu", limit=5)
    assert options_from_json(options_to_json(options)) == options


def test_child_analyses_and_reports_every_track(library):
    seen: list[tuple[int, int]] = []
    niceness: list[int] = []

    def progress(done: int, total: int, path: str) -> None:
        seen.append((done, total))
        if hasattr(os, "getpriority") and job._proc is not None:
            niceness.append(os.getpriority(os.PRIO_PROCESS, job._proc.pid))

    job = library.analysis_process(progress=progress)
    report = job.run()
    assert report.analyzed == N and report.failed == 0 and not report.cancelled
    assert report.model_id == library.active_model().model_id
    assert library.status()["analyzed"] == N
    assert embeddings.count(library.db, report.model_id) == N
    # The total first (before the model loads), then one report per finished track.
    assert seen == [(d, N) for d in range(N + 1)]
    if hasattr(os, "getpriority"):  # background work yields the CPU to the GUI
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        assert niceness and min(niceness) == min(19, mine + NICENESS)


def test_cancel_stops_the_child_and_the_next_run_resumes(library):
    # Cancel at the first report (the total, sent before the model loads): cancelling after a
    # few tracks raced the child, which can finish all of them in about a second.
    job = library.analysis_process(
        AnalysisOptions(commit_every=2, batch_size=8),
        progress=lambda d, t, p: job.cancel(),
    )
    report = job.run()
    assert report.cancelled
    analysed = library.status()["analyzed"]
    assert analysed < N
    again = library.analysis_process().run()
    assert again.analyzed == N - analysed and library.status()["analyzed"] == N


def test_user_error_in_the_child_is_a_musicssl_error(library):
    if platform.system() == "Darwin":
        pytest.skip("MPS may exist here; the test needs a device that cannot")
    with pytest.raises(AnalysisProcessError, match="(?i)mps"):
        library.analysis_process(AnalysisOptions(device="mps")).run()
    assert library.status()["new"] == N  # nothing lost


def test_killed_child_is_reported_and_resumable(library):
    job = library.analysis_process(AnalysisOptions(commit_every=1, batch_size=8))

    def kill_after_one(done: int, total: int, path: str) -> None:
        if done >= 1 and job._proc is not None:
            job._proc.kill()

    job.progress = kill_after_one
    with pytest.raises(AnalysisCrashError, match="ended unexpectedly"):
        job.run()
    before = library.status()["analyzed"]
    assert before < N
    assert library.analysis_process().run().analyzed == N - before
    assert library.status()["analyzed"] == N


def test_child_stops_when_its_parent_goes_away(library):
    """Closing stdin (what a dead parent's pipe does) cancels the job at the next track."""
    job = library.analysis_process()
    proc = subprocess.Popen(job.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # the total: the child is running
    assert json.loads(first)["progress"][1] == N
    proc.stdin.close()
    out = proc.stdout.read()
    assert proc.wait(timeout=120) == 0
    report = json.loads(out.strip().splitlines()[-1])["report"]
    assert report["cancelled"] and report["analyzed"] < N
