"""Teacher labels (training/corpus/teacher.py) and what they feed: yes/no tags in a real library,
the held-out agreement score and the musicnn peer row, and scoring the validation split.

musicnn needs TensorFlow, which lives in its own venv (`make teacher`, .venv-teacher) so that
MusicSSL never imports it. Most tests start from a teacher file in the format `musicnn_runner.py`
writes, so everything of ours downstream of TensorFlow runs for real: a scanned SQLite library,
encoded audio, the real CLI. One test runs the real runner in that venv; CI builds the venv and
sets MUSICSSL_REQUIRE_TEACHER=1, so there a missing venv fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from audio_fixtures import write_audio
from musicssl.engine.library import Library
from musicssl.training.cli import main
from musicssl.training.corpus.manifest import Entry, write_manifest
from musicssl.training.corpus.teacher import (
    NEGATIVE_BELOW,
    POSITIVE_AT,
    TEACHER_FILE,
    label_tracks,
    read_teacher,
    run_teacher,
    teacher_labels,
)
from musicssl.training.datasets import from_library
from test_corpus_evaluate import _real as real_soundtrack
from test_corpus_evaluate import bundle, corpus  # noqa: F401 - module fixtures

MTT = ["guitar", "classical", "slow", "techno", "piano", "beat", "female"]
VOCAB = ["bass", "classical", "guitar", "piano", "slow"]  # bass: not an MTT tag
TEACHER_PYTHON = Path(__file__).resolve().parents[1] / ".venv-teacher" / "bin" / "python"


def _write_teacher(root, probs_by_path, features=4):
    """A teacher file as the runner writes it: absolute paths, MTT tag order."""
    tracks = {
        str((root / path).absolute()): {
            "probs": probs,
            "max_pool": [float(i) for i in range(features)],
        }
        for path, probs in probs_by_path.items()
    }
    data = {"model": "MTT_musicnn", "tags": MTT, "tracks": tracks, "errors": {}}
    (root / TEACHER_FILE).write_text(json.dumps(data), encoding="utf-8")


def test_confident_calls_become_yes_or_no_and_the_rest_stays_unknown(tmp_path):
    high, low, unsure = POSITIVE_AT + 0.1, NEGATIVE_BELOW / 2, (POSITIVE_AT + NEGATIVE_BELOW) / 2
    #       guitar classical slow  techno piano beat  female
    probs = [high, low, unsure, high, low, high, high]
    _write_teacher(tmp_path, {"a.ogg": probs})
    teacher = read_teacher(tmp_path)
    assert list(teacher.probs) == ["a.ogg"]  # root-relative again, as in the manifest
    labels = teacher_labels(teacher, "a.ogg", VOCAB)
    # Only tags both vocabularies share; "slow" is unsure; "bass" unknown to the teacher.
    assert labels == {"guitar": 1.0, "classical": 0.0, "piano": 0.0}
    assert teacher_labels(teacher, "not-tagged.ogg", VOCAB) == {}


@pytest.fixture
def labelled_corpus(tmp_path):
    """Two real training tracks and one synthetic piece with a genre, scanned into a library."""
    root = tmp_path / "corpus"
    entries = []
    for k, (source, album) in enumerate([("real", "Game"), ("real", "Game"), ("synth", "Rock")]):
        rel = f"audio/train/{source}/{k}.ogg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_audio(root / rel, seconds=1.0, seed=k, tags={"album": album, "genre": "rock"})
        entries.append(
            Entry(path=rel, split="train", source=source, album=album, album_artist=album)
        )
    write_manifest(root, entries)
    db = tmp_path / "train.db"
    with Library(db) as lib:
        lib.scan([root / "audio" / "train"])
    return root, entries, db


def test_labels_enter_the_training_library_as_yes_no_tags(labelled_corpus):
    root, entries, db = labelled_corpus
    high, low = POSITIVE_AT + 0.1, NEGATIVE_BELOW / 2
    real = [e.path for e in entries if e.source == "real"]
    _write_teacher(root, {real[0]: [high, low, low, low, high, 0, 0], real[1]: [low] * 7})
    assert label_tracks(root, db, VOCAB) == {"tracks": 2, "yes": 2, "no": 6}

    # A rerun with other calls replaces the earlier ones instead of adding to them.
    _write_teacher(root, {real[0]: [low, low, high, low, low, 0, 0], real[1]: [low] * 7})
    assert label_tracks(root, db, VOCAB) == {"tracks": 2, "yes": 1, "no": 7}

    items = {it.path: it for it in from_library(db)}
    first = items[str((root / real[0]).absolute())]
    assert first.labels == {"rock": 1.0, "guitar": 0.0, "classical": 0.0, "slow": 1.0, "piano": 0.0}
    synth = next(it for p, it in items.items() if "/synth/" in p)
    assert synth.labels == {"rock": 1.0}  # file genres are not the teacher's to touch


def test_heldout_scores_the_head_against_the_teacher_and_adds_musicnn(
    corpus,  # noqa: F811 - fixture
    bundle,  # noqa: F811 - fixture
    tmp_path,
    one_torch_thread,
):
    """Agreement on real test tracks, tags handed out per track, and the musicnn peer row."""
    source_root, entries = corpus
    root = tmp_path / "corpus"
    shutil.copytree(source_root, root)
    rng = np.random.default_rng(0)
    real_test = [e.path for e in entries if e.source == "real" and e.split == "test"]
    # Every track a confident yes on one tag and a no on another, so each has both classes.
    probs = {}
    for k, path in enumerate(real_test):
        p = rng.uniform(NEGATIVE_BELOW, POSITIVE_AT, len(MTT))
        p[MTT.index("guitar")], p[MTT.index("piano")] = ((0.9, 0.01), (0.01, 0.9))[k % 2]
        probs[path] = p.round(4).tolist()
    _write_teacher(root, probs, features=8)
    # The bundle's own thresholds decide what the head hands out: at 0 every tag, every track.
    eager = tmp_path / "eager"
    shutil.copytree(bundle, eager)
    config = json.loads((eager / "config.json").read_text(encoding="utf-8"))
    config["thresholds"] = [0.0] * len(config["tags"])
    (eager / "config.json").write_text(json.dumps(config), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["corpus", "evaluate", str(eager), "--root", str(root), "--out", str(out)]
    assert (
        main([*argv, "--cache", str(tmp_path / "cache"), "--baselines", "", "--no-progress"]) == 0
    )

    report = json.loads((out / "results.json").read_text(encoding="utf-8"))
    real_tags = report["features"]["model"]["real_tags"]
    assert real_tags["n_tags"] == 2  # guitar and piano have both a yes and a no
    assert 0.0 <= real_tags["roc_auc"] <= 1.0
    # Every tag said for every track: each of guitar/piano is right on half the tracks.
    assert real_tags["f1"] == pytest.approx(2 / 3)
    assert real_tags["tags_per_track"] == len(config["tags"])
    assert real_tags["widest_tag_share"] == 1.0
    peer = report["features"]["musicnn max-pool"]
    assert peer["retrieval"]["queries"] == len(real_test)
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "| musicnn max-pool |" in md and "ROC-AUC vs musicnn" in md


def test_split_val_scores_the_validation_parts(corpus, bundle, tmp_path, one_torch_thread):  # noqa: F811
    root, entries = corpus
    out = tmp_path / "out"
    argv = ["corpus", "evaluate", str(bundle), "--root", str(root), "--out", str(out)]
    argv += ["--cache", str(tmp_path / "cache"), "--baselines", "", "--split", "val"]
    assert main([*argv, "--no-progress"]) == 0
    counts = json.loads((out / "results.json").read_text(encoding="utf-8"))["counts"]
    synth_val = sum(e.source == "synth" and e.split == "val" for e in entries)
    assert counts["split"] == "val"
    assert counts["synth_test"] == synth_val  # the scored pieces are the validation ones
    assert counts["real_test"] == sum(e.source == "real" and e.split == "val" for e in entries)


def test_a_missing_teacher_environment_is_a_clear_error(corpus, tmp_path, capsys):  # noqa: F811
    root, _ = corpus
    missing = tmp_path / "no-venv" / "bin" / "python"
    assert main(["corpus", "teacher", "--root", str(root), "--python", str(missing)]) == 1
    err = capsys.readouterr().err
    assert "make teacher" in err and "Traceback" not in err
    assert not (root / TEACHER_FILE).exists()


def test_a_failing_runner_is_reported_without_a_traceback(corpus, tmp_path, capsys):  # noqa: F811
    """A teacher venv without musicnn: the runner's import fails, the command says so."""
    root, _ = corpus
    assert main(["corpus", "teacher", "--root", str(root), "--python", sys.executable]) == 2
    assert "musicnn runner failed" in capsys.readouterr().err
    assert not (root / TEACHER_FILE).exists()


def test_a_rerun_tags_only_the_new_files_and_keeps_the_earlier_labels(tmp_path):
    """A soundtrack added to the recipe: only its files go to the teacher. The interpreter here
    is a stand-in that answers in the runner's file format (TensorFlow is not installed in CI);
    what is tested is which files run_teacher sends and how it merges the answers."""
    fake = tmp_path / "teacher-python"
    asked = tmp_path / "asked.txt"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "paths = sys.stdin.read().split()\n"
        f"open({str(asked)!r}, 'a').write(''.join(p + '\\n' for p in paths))\n"
        "tracks = {p: {'probs': [len(p) / 100] * 7, 'max_pool': [1.0, 2.0]} for p in paths}\n"
        "out = {'model': 'MTT_musicnn', 'tags': " + repr(MTT) + ", 'tracks': tracks,\n"
        "       'errors': {}}\n"
        "json.dump(out, open(sys.argv[2], 'w'))\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)

    def real(name: str) -> Entry:
        return Entry(path=f"audio/{name}.ogg", split="val", source="real", album="A",
                     album_artist="A")  # fmt: skip

    write_manifest(tmp_path, [real("one"), real("two")])
    run_teacher(tmp_path, str(fake))
    first = read_teacher(tmp_path)
    assert sorted(first.probs) == ["audio/one.ogg", "audio/two.ogg"]

    write_manifest(tmp_path, [real("one"), real("two"), real("three")])
    asked.write_text("")
    run_teacher(tmp_path, str(fake))
    assert asked.read_text().split() == [str(tmp_path / "audio/three.ogg")]
    merged = read_teacher(tmp_path)
    assert sorted(merged.probs) == ["audio/one.ogg", "audio/three.ogg", "audio/two.ogg"]
    np.testing.assert_array_equal(merged.probs["audio/one.ogg"], first.probs["audio/one.ogg"])
    assert not list(tmp_path.glob("*.new.json"))

    asked.write_text("")
    run_teacher(tmp_path, str(fake))  # nothing new: the teacher is not started at all
    assert asked.read_text() == ""


def test_the_real_musicnn_runner_tags_every_real_file(tmp_path, capsys):
    """musicnn's own MTT graph and weights in the teacher venv, through `corpus teacher`: every
    real file gets 50 finite probabilities and its max-pool features. Finite matters: musicnn's
    own batch_data computes the log-mel in float16, which turns ordinary audio into inf."""
    if not TEACHER_PYTHON.exists():
        if os.environ.get("MUSICSSL_REQUIRE_TEACHER"):
            pytest.fail(f"{TEACHER_PYTHON} is missing: CI builds it with `make teacher`")
        pytest.skip("no .venv-teacher here (`make teacher` builds it)")
    entries = real_soundtrack(tmp_path, "Frozen Bubble", "val", 2, seed=7)
    write_manifest(tmp_path, entries)
    argv = ["corpus", "teacher", "--root", str(tmp_path), "--python", str(TEACHER_PYTHON)]
    assert main([*argv, "--patches", "3"]) == 0, capsys.readouterr().err

    labels = read_teacher(tmp_path)
    assert len(labels.tags) == 50 and {"guitar", "piano", "techno"} <= set(labels.tags)
    assert sorted(labels.probs) == sorted(e.path for e in entries) and not labels.errors
    for path, probs in labels.probs.items():
        assert probs.shape == (50,) and np.isfinite(probs).all(), path
        assert ((probs >= 0) & (probs <= 1)).all() and probs.std() > 0
        assert np.isfinite(labels.features[path]).all() and labels.features[path].size > 50
    # Two different pieces get different calls.
    first, second = (labels.probs[e.path] for e in entries)
    assert not np.allclose(first, second)
