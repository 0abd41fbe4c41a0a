"""Analysis on real files: embeddings, errors, cancel, resume after kill -9, model switch."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from audio_fixtures import write_audio
from musicssl.engine import embeddings
from musicssl.engine.analysis import AnalysisOptions
from musicssl.engine.excerpts import ExcerptPolicy
from musicssl.engine.library import Library


@pytest.fixture
def library(tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    for i, ext in enumerate([".mp3", ".flac", ".ogg", ".opus", ".m4a", ".wav"]):
        write_audio(music / f"song{i}{ext}", seconds=8.0, seed=i % 3, tags={"title": f"S{i}"})
    (music / "corrupt.mp3").write_bytes(b"ID3" + os.urandom(5000))
    lib = Library(tmp_path / "lib.db")
    lib.scan([music])
    yield lib
    lib.close()


def test_analysis_embeds_every_good_track_and_records_failures(library):
    report = library.analyze()
    assert report.analyzed == 6, report.errors
    # The corrupt file either failed at scan time or in analysis; either way it is an error row.
    status = library.status()
    assert status["analyzed"] == 6 and status["errors"] == 1
    model_id = library.active_model().model_id
    ids = [t["id"] for t in library.tracks(["status=analyzed"])]
    vectors = embeddings.get(library.db, model_id, ids)
    assert vectors.shape[0] == 6
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # The shipped model is trained: auto tags are written, from its vocabulary only.
    assert library.active_model().trained
    auto = {r[0] for r in library.db.execute("SELECT tag FROM tags WHERE source = 'auto'")}
    assert auto and auto <= set(library.active_model().config.tags)
    # Decoded durations replaced the container's (the Ogg one lies).
    for t in library.tracks(["status=analyzed"]):
        assert t["duration"] == pytest.approx(8.0, abs=0.2), t["path"]


def test_analysis_stores_each_tracks_excerpt_set_and_fills_missing_ones(library):
    from musicssl.engine import excerpt_sets

    library.analyze()
    model_id = library.active_model().model_id
    ids = [t["id"] for t in library.tracks(["status=analyzed"])]
    sets = excerpt_sets.get_present(library.db, model_id, ids)
    dim = embeddings.get(library.db, model_id, ids[:1]).shape[1]
    for tid in ids:
        # 8 s tracks: two 3 s excerpts and the 2 s tail, as unit vectors of the index's space.
        assert sets[tid].shape == (3, dim)
        np.testing.assert_allclose(np.linalg.norm(sets[tid], axis=1), 1.0, atol=2e-3)
    # A library analysed before sets existed lacks them: the next analysis fills them in.
    library.db.execute("DELETE FROM excerpt_sets WHERE track_id = ?", [ids[0]])
    library.db.conn.commit()
    report = library.analyze()
    assert report.total == 1 and report.analyzed == 1
    assert ids[0] in excerpt_sets.get_present(library.db, model_id, ids[:1])


def test_the_untrained_baseline_never_writes_auto_tags(library):
    library.use_model("baseline-random-init")
    assert library.analyze().analyzed == 6
    assert library.db.execute("SELECT count(*) FROM tags WHERE source = 'auto'").fetchone()[0] == 0


def test_a_rerun_has_nothing_to_do_and_similar_finds_the_same_signal(library):
    library.analyze()
    assert library.analyze().total == 0
    seed = library.tracks(["title=S0"])[0]["id"]
    results = library.similar([seed], n=5)
    assert seed not in [r.track_id for r in results]
    # song3 is the same music (seed 0) in another codec: it must be the nearest.
    assert results[0].title == "S3"


@pytest.mark.parametrize("policy", ["spaced", "all"])
def test_policies_give_close_embeddings_for_one_track(tmp_path, policy):
    write_audio(tmp_path / "long.flac", seconds=60.0, seed=4)
    with Library(tmp_path / "lib.db") as lib:
        lib.scan([tmp_path / "long.flac"])
        report = lib.analyze(AnalysisOptions(policy=ExcerptPolicy(policy, 4)))
        assert report.analyzed == 1


def test_cancel_leaves_unfinished_tracks_new_and_resume_finishes(tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    for i in range(40):
        write_audio(music / f"s{i}.wav", seconds=6.0, seed=i)
    with Library(tmp_path / "lib.db") as lib:
        lib.scan([music])
        seen: list[int] = []
        job = lib.analysis_job(
            AnalysisOptions(commit_every=4, batch_size=4), progress=lambda d, t, p: seen.append(d)
        )

        def cancel_soon(done, total, path):
            seen.append(done)
            if done >= 8:
                job.cancel()

        job.progress = cancel_soon
        report = job.run()
        assert report.cancelled
        analysed = lib.status()["analyzed"]
        assert 8 <= analysed < 40
        assert lib.status()["new"] == 40 - analysed
        second = lib.analyze()
        assert second.analyzed == 40 - analysed
        assert lib.status()["analyzed"] == 40


def test_kill_9_mid_analysis_resumes_without_redoing_or_duplicating(tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    for i in range(60):
        write_audio(music / f"s{i:02d}.flac", seconds=20.0, seed=i)
    db_path = tmp_path / "lib.db"
    with Library(db_path) as lib:
        lib.scan([music])
    exe = [
        sys.executable,
        "-m",
        "musicssl.engine.cli",
        "--db",
        str(db_path),
        "analyze",
        "--policy",
        "all",
        "--batch-size",
        "8",
    ]
    proc = subprocess.Popen(exe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done_before = 0
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            with sqlite3.connect(db_path, timeout=10) as conn:
                done_before = conn.execute(
                    "SELECT count(*) FROM tracks WHERE status = 'analyzed'"
                ).fetchone()[0]
            if done_before >= 16:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "analysis finished before it could be killed"
    assert 16 <= done_before < 60

    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        before = dict(conn.execute("SELECT track_id, rowid FROM embeddings").fetchall())
    assert len(before) >= done_before

    with Library(db_path) as lib:
        report = lib.analyze()
        assert report.analyzed == 60 - len(before)
        after = dict(lib.db.execute("SELECT track_id, rowid FROM embeddings").fetchall())
        assert len(after) == 60
        # Tracks finished before the kill were not analysed again (same embedding rows).
        assert all(after[t] == r for t, r in before.items())
        assert len(lib.similar([1], n=10)) == 10


def test_switching_model_reanalyses_only_into_the_new_space(library):
    library.analyze()
    first = library.active_model().model_id
    # Install a second (different random init) bundle and switch to it.
    import torch
    from musicssl.engine import bundle as bundlemod
    from musicssl.engine import models

    torch.manual_seed(123)
    cfg = bundlemod.default_config("other-random", "melcnn")
    torch_model = bundlemod.build_model(cfg)
    src = library.path.parent / "other-bundle"
    bundlemod.save_bundle(torch_model, cfg, src)
    info = models.install_bundle(src)
    library.use_model(info.model_id)
    assert info.model_id != first
    report = library.analyze()
    assert report.analyzed == 6
    counts = dict(
        library.db.execute("SELECT model_id, count(*) FROM embeddings GROUP BY model_id").fetchall()
    )
    assert counts == {first: 6, info.model_id: 6}


def test_analysis_indexes_the_bundles_whitened_vector(library):
    """Three bundles with one encoder: plain (z), identity whitening (h/|h|), diagonal whitening.
    Analysis must store exactly what each bundle's `similarity` makes of the same mean h."""
    import dataclasses

    import torch
    from musicssl.engine import bundle as bundlemod
    from musicssl.engine import models

    torch.manual_seed(7)
    plain_cfg = bundlemod.default_config("plain", "melcnn", {"channels": [4, 8]})
    plain = bundlemod.build_model(plain_cfg)
    white_cfg = dataclasses.replace(plain_cfg, whitened=True)
    scale = torch.linspace(0.2, 3.0, plain_cfg.embedding_dim)
    vectors = {}
    for name, matrix in (("plain", None), ("identity", torch.eye(len(scale))), ("diag", None)):
        if name == "plain":
            model, cfg = plain, plain_cfg
        else:
            model, cfg = bundlemod.build_model(white_cfg), dataclasses.replace(white_cfg, name=name)
            model.load_state_dict(plain.state_dict(), strict=False)
            model.set_whitening(
                torch.zeros(len(scale)), torch.diag(scale) if matrix is None else matrix
            )
        src = library.path.parent / name
        bundlemod.save_bundle(model, cfg, src)
        info = models.install_bundle(src)
        library.use_model(info.model_id)
        assert library.analyze().analyzed == 6
        ids = [t["id"] for t in library.tracks(["status=analyzed"])]
        vectors[name] = torch.from_numpy(embeddings.get(library.db, info.model_id, ids))
    unit_h = vectors["identity"]  # the mean h's direction
    torch.testing.assert_close(vectors["plain"], plain.normalize(unit_h), atol=1e-4, rtol=0)
    expected = torch.nn.functional.normalize(unit_h * scale, dim=-1)
    torch.testing.assert_close(vectors["diag"], expected, atol=1e-4, rtol=0)
    assert (vectors["diag"] - vectors["plain"]).abs().max() > 0.01


def test_duplicates_use_the_cut_off_of_the_models_space(library):
    """song0..5 are three signals, each in two codecs. The shipped model is whitened, whose
    re-encodes sit lower than plain z's (engine/similar.py); its own cut-off must still pair
    every codec twin and nothing else."""
    from musicssl.engine import similar

    library.analyze()
    assert library.active_model().config.whitened
    groups = [sorted(t["title"] for t in g) for g in library.duplicates()]
    assert sorted(groups) == [["S0", "S3"], ["S1", "S4"], ["S2", "S5"]]
    assert similar.duplicate_threshold(True) < similar.duplicate_threshold(False)
    assert library.duplicates(threshold=1.0) == []  # an explicit cut-off still rules


def test_analysis_appends_the_standardised_pitch_class_profile(library):
    """A bundle with harmony_weight w indexes [z, sqrt(w) · unit profile] / sqrt(1 + w): the h part
    is the whitened vector of the same encoder, and the profile part is the key of the music,
    the same for one signal in two codecs (song0..5 are three signals in two codecs each)."""
    import dataclasses

    import torch
    from musicssl.engine import bundle as bundlemod
    from musicssl.engine import models

    torch.manual_seed(3)
    cfg = dataclasses.replace(
        bundlemod.default_config("harmony", "melcnn", {"channels": [4, 8]}), whitened=True
    )
    plain = bundlemod.build_model(cfg)
    plain.set_whitening(torch.zeros(cfg.embedding_dim), torch.eye(cfg.embedding_dim))
    harmony_cfg = dataclasses.replace(cfg, name="harmony-1", harmony_weight=1.0)
    harmony = bundlemod.build_model(harmony_cfg)
    harmony.load_state_dict(plain.state_dict(), strict=False)
    harmony.set_statistic("harmony", torch.zeros(12), torch.ones(12))
    vectors = {}
    for model, config in ((plain, cfg), (harmony, harmony_cfg)):
        bundlemod.save_bundle(model, config, library.path.parent / config.name)
        info = models.install_bundle(library.path.parent / config.name)
        library.use_model(info.model_id)
        assert library.analyze().analyzed == 6
        ids = [t["id"] for t in library.tracks(["status=analyzed"], order_by="title")]
        vectors[config.name] = embeddings.get(library.db, info.model_id, ids)

    dim = cfg.embedding_dim
    both = vectors["harmony-1"] * np.sqrt(2.0)
    assert both.shape == (6, dim + 12)
    np.testing.assert_allclose(both[:, :dim], vectors["harmony"], atol=1e-4)
    profiles = both[:, dim:]
    np.testing.assert_allclose(np.linalg.norm(profiles, axis=1), 1.0, atol=1e-4)
    cos = profiles @ profiles.T  # rows: S0..S5; S0/S3, S1/S4, S2/S5 are codec twins
    for a in range(3):
        # (mp3's encoder delay shifts its excerpts a little: 0.93 there, 1.0 for the others)
        assert cos[a, a + 3] > 0.9
        assert all(cos[a, b] < cos[a, a + 3] - 0.05 for b in range(6) if b not in (a, a + 3))


def test_auto_tags_follow_new_thresholds_and_model_switches_without_reanalysis(library):
    """Analysis stores each track's tag probabilities; a bundle re-exported with new thresholds
    keeps its model id (nothing to analyse), yet its auto tags must follow the new thresholds,
    and switching to another model and back must bring the first model's tags back."""
    import json

    import torch
    from musicssl.engine import auto_tags, models
    from musicssl.engine import bundle as bundlemod

    torch.manual_seed(5)
    cfg = bundlemod.default_config(
        "tagger", "melcnn", {"channels": [4, 8]}, tags=["a", "b", "c"], trained=True
    )
    bundlemod.save_bundle(bundlemod.build_model(cfg), cfg, library.path.parent / "tagger")
    info = models.install_bundle(library.path.parent / "tagger")
    library.use_model(info.model_id)
    assert library.analyze().analyzed == 6

    def auto() -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        for track_id, tag, score in library.db.conn.execute(
            "SELECT track_id, tag, score FROM tags WHERE source = 'auto'"
        ):
            out.setdefault(track_id, {})[tag] = score
        return out

    stored = {
        t: np.frombuffer(blob, np.float32)
        for t, blob in library.db.conn.execute(
            "SELECT track_id, probs FROM tag_probs WHERE model_id = ?", [info.model_id]
        )
    }
    assert len(stored) == 6 and all(p.shape == (3,) for p in stored.values())
    first = auto()
    for track_id, probs in stored.items():  # the tags are the stored probabilities >= 0.5
        expected = {t: float(p) for t, p in zip("abc", probs, strict=True) if p >= 0.5}
        assert first.get(track_id, {}) == pytest.approx(expected)

    def rethreshold(values: list[float]) -> None:
        path = info.path / bundlemod.CONFIG_NAME
        config = json.loads(path.read_text())
        path.write_text(json.dumps({**config, "thresholds": values}))

    rethreshold([0.0, 0.0, 1.0])  # same weights, so the same model id
    assert models.find_bundle(info.model_id).model_id == info.model_id
    assert library.analyze().analyzed == 0  # nothing re-analysed ...
    everything = auto()  # ... but the auto tags follow the new thresholds
    assert {t: set(tags) for t, tags in everything.items()} == {t: {"a", "b"} for t in stored}
    for track_id, probs in stored.items():
        assert everything[track_id]["a"] == pytest.approx(float(probs[0]))

    # Another model (the untrained baseline hands out no tags), then back: restored, no analysis.
    library.use_model("baseline-random-init")
    assert library.analyze().analyzed == 6 and auto() == {}
    library.use_model(info.model_id)
    assert library.analysis_pending() == 0
    assert library.analyze().analyzed == 0 and auto() == everything
    rule = library.db.conn.execute(
        "SELECT value FROM settings WHERE key = ?", [auto_tags.RULE_KEY]
    ).fetchone()[0]
    assert json.loads(rule)["thresholds"] == [0.0, 0.0, 1.0]

    # Tracks analysed before probabilities were stored (schema v2) are analysed once more.
    library.db.conn.execute("DELETE FROM tag_probs")
    library.db.conn.commit()
    assert library.analysis_pending() == 6
    assert library.analyze().analyzed == 6
    assert library.analysis_pending() == 0 and auto() == everything
