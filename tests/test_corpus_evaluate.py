"""`musicssl-train corpus evaluate` end to end: a tiny corpus of real encoded files, a real bundle.

The corpus mirrors what `corpus build` writes (audio under the root, manifest.jsonl beside it)
and is small enough for one CPU core: a 1 s excerpt, 8 kHz model, seconds-long files.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from audio_fixtures import write_audio
from musicssl.engine.bundle import build_model, default_config, save_bundle
from musicssl.training.audio_cache import AudioCache
from musicssl.training.cli import main
from musicssl.training.corpus.manifest import Entry, write_manifest

SAMPLE_RATE = 8000
TAGS = ["classical", "fast", "guitar", "piano", "rock", "slow"]  # all in the shipped vocabulary
TASKS = ["tags", "genre", "tempo"]
SPLIT_SIZES = {"train": 8, "val": 4, "test": 4}
SOUNDTRACKS = {"Frozen Bubble": 3, "Supertux": 3}  # real test albums -> tracks
TRAIN_SOUNDTRACK = "Wesnoth"  # real, split "train": must never be scored


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _bpm(seed):
    """The tempo `music_signal(seed)` plays at: its second random draw (see audio_fixtures)."""
    rng = np.random.default_rng(seed)
    rng.integers(0, 12)
    return rng.uniform(70, 160)


def _seeds(fast, n, start):
    """`n` seeds from `start` whose signal is fast (>= 130 BPM) or slow (<= 100 BPM)."""
    seeds, seed = [], start
    while len(seeds) < n:
        bpm = _bpm(seed)
        if (bpm >= 130) if fast else (bpm <= 100):
            seeds.append(seed)
        seed += 1
    return seeds


def _synth(root):
    """Pieces whose labels differ in every split; the tempo label is the signal's own tempo."""
    n = sum(SPLIT_SIZES.values())
    fast, slow = iter(_seeds(True, n // 2, 0)), iter(_seeds(False, n // 2, 0))
    entries = []
    for split, size in SPLIT_SIZES.items():
        for i in range(size):
            genre = ("rock", "classical")[i % 2]
            instrument = ("guitar", "piano")[(i // 2) % 2]
            tempo = "fast" if i % 4 in (0, 3) else "slow"  # uncorrelated with genre
            seed = next(fast if tempo == "fast" else slow)
            rel = f"audio/{split}/synth/{genre}/{genre}-{split}-{i:02d}.flac"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            write_audio(root / rel, seconds=2.0, seed=seed)
            entries.append(
                Entry(
                    path=rel,
                    split=split,
                    source="synth",
                    album=f"{genre.title()} Sketches {split} 1",
                    album_artist="MusicSSL synthetic",
                    artist="MusicSSL synthetic",
                    title=rel.rsplit("/", 1)[1],
                    tags=sorted([genre, instrument, tempo]),
                    facets={
                        "instrument": [instrument],
                        "genre": [genre],
                        "tempo": [tempo],
                        "mode": [("major", "minor")[i % 3 == 0]],
                    },
                    duration=2.0,
                    soundfont="other" if split == "test" else "main",
                )
            )
    return entries


def _real(root, album, split, tracks, seed):
    """A soundtrack's tracks: 5 s each, so 5 one-second excerpts and two halves to compare."""
    entries = []
    slug = album.lower().replace(" ", "-")
    for k in range(tracks):
        rel = f"audio/{split}/real/{slug}/track{k + 1}.ogg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_audio(root / rel, seconds=5.0, seed=seed + k)
        entries.append(
            Entry(
                path=rel,
                split=split,
                source="real",
                album=album,
                album_artist=album,
                title=f"track{k + 1}",
                facets={"soundtrack": [album], "genre": []},
                duration=5.0,
                package=slug,
            )
        )
    return entries


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(root, manifest entries): written once, read by every test of this module."""
    root = tmp_path_factory.mktemp("corpus")
    entries = _synth(root)
    for n, (album, tracks) in enumerate(SOUNDTRACKS.items()):
        entries += _real(root, album, "test", tracks, seed=1000 + 100 * n)
    entries += _real(root, TRAIN_SOUNDTRACK, "train", 2, seed=2000)
    write_manifest(root, entries)
    return root, entries


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A small 'trained' tagger bundle: the model's own head is scored, unlike random init."""
    config = default_config(
        "corpus-eval-test",
        "melcnn",
        {"channels": [8, 16, 32], "n_mels": 32, "n_fft": 256, "hop_length": 128},
        tags=TAGS,
        trained=True,
        sample_rate=SAMPLE_RATE,
        embedding_dim=16,
        excerpt_samples=SAMPLE_RATE,
    )
    path = tmp_path_factory.mktemp("models") / "tagger"
    with torch.random.fork_rng(devices=[]):  # the same weights on every run
        torch.manual_seed(1)
        save_bundle(build_model(config), config, path)
    return path


def _unit(value):
    return value is not None and 0.0 <= value <= 1.0


def test_scores_every_feature_set_on_the_held_out_parts_only(
    corpus, bundle, tmp_path, capsys, one_torch_thread
):
    """What a user reads off results.json/md: every row scored, counts true to the manifest."""
    root, entries = corpus
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["corpus", "evaluate", str(bundle), "--root", str(root), "--out", str(out)]
    argv += ["--cache", str(cache), "--excerpts", "4", "--tasks", ",".join(TASKS)]
    assert main([*argv, "--baselines", "mfcc,random-init", "--no-progress"]) == 0

    report = json.loads((out / "results.json").read_text(encoding="utf-8"))
    md = (out / "results.md").read_text(encoding="utf-8")
    assert md in capsys.readouterr().out  # the same tables on the terminal

    real_test = [e for e in entries if e.source == "real" and e.split == "test"]
    assert report["counts"] == {
        "split": "test",
        "synth_train": SPLIT_SIZES["train"],
        "synth_val": SPLIT_SIZES["val"],
        "synth_test": SPLIT_SIZES["test"],
        "real_test": len(real_test),
        "real_test_soundtracks": sorted(SOUNDTRACKS),
    }
    assert report["config"]["tasks"] == TASKS
    assert report["config"]["baselines"] == ["mfcc", "random-init"]
    assert list(report["features"]) == ["model", "mfcc", "random-init"]

    for name, row in report["features"].items():
        retrieval = row["retrieval"]
        assert retrieval["queries"] == len(real_test), name  # every track has album-mates
        assert all(_unit(v) for k, v in retrieval.items() if k != "queries"), (name, retrieval)
        assert sorted(row["probes"]) == sorted(TASKS), name
        for task in TASKS:
            score = row["probes"][task]["mlp"]["1"]
            assert _unit(score["roc_auc"]) and _unit(score["pr_auc"]), (name, task, score)
            assert score["n_tags"] >= 2, (name, task, score)  # both classes scored
            assert score["labelled_tracks"] == SPLIT_SIZES["train"], (name, task)
    features = report["features"]
    for name in ("model", "random-init", "mfcc"):  # halves of each track's excerpts
        assert _unit(features[name]["identification"]), name
        by_soundtrack = features[name]["identification_by_soundtrack"]
        assert sorted(by_soundtrack) == sorted({e.album for e in real_test}), name
        counts = [sum(e.album == a for e in real_test) for a in by_soundtrack]
        overall = np.dot(list(by_soundtrack.values()), counts) / sum(counts)
        assert overall == pytest.approx(features[name]["identification"]), name
        assert f"Identification per soundtrack ({name}): " in md
    # Models rank as the app does (excerpt sets blended in); the track vectors alone beside it.
    for name in ("model", "random-init"):
        assert _unit(features[name]["identification_vectors_only"]), name
    assert "identification_vectors_only" not in features["mfcc"]
    assert "| identification | identification (vectors only) |" in md
    head = features["model"]["head"]  # the bundle's own tags, scored on the test pieces
    assert _unit(head["roc_auc"]) and head["n_tags"] == len(TAGS), head
    assert "head" not in features["random-init"] and "head" not in features["mfcc"]

    assert f"test split: {SPLIT_SIZES['test']} synthetic pieces (other soundfont)" in md
    assert f"{len(real_test)} tracks of {len(SOUNDTRACKS)} soundtracks" in md
    assert "| model | tags | own head | 100% |" in md
    for name in ("model", "mfcc", "random-init"):
        for task in TASKS:
            assert f"| {name} | {task} | mlp | 100% |" in md

    # Held-out means held out: the real train soundtrack was never even decoded.
    decoded = AudioCache(cache, SAMPLE_RATE)
    for e in entries:
        used = e.source == "synth" or e.split == "test"
        assert (str((root / e.path).resolve()) in decoded) == used, e.path
    assert TRAIN_SOUNDTRACK not in md


def test_no_baselines_scores_the_model_alone(corpus, bundle, tmp_path, one_torch_thread):
    """`--baselines ''` (as `experiments` runs it per arm): one row, the tags task by default."""
    root, _ = corpus
    out = tmp_path / "out"
    argv = ["corpus", "evaluate", str(bundle), "--root", str(root), "--out", str(out)]
    argv += ["--cache", str(tmp_path / "cache"), "--excerpts", "2", "--baselines", ""]
    assert main([*argv, "--no-progress"]) == 0
    report = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert list(report["features"]) == ["model"]
    model = report["features"]["model"]
    assert list(model["probes"]) == ["tags"]
    assert _unit(model["identification"])  # 2 of 5 excerpts: still a first and a second half

    # What `experiments` asks for: the features by cosine alone, no excerpt-set re-ranking.
    from musicssl.training.checkpoint import load_model
    from musicssl.training.corpus.heldout import HeldoutConfig, evaluate_heldout, markdown

    net, bundle_config, _ = load_model(bundle)
    cfg = HeldoutConfig(root=root, cache_dir=tmp_path / "cache", excerpts=2, baselines=[])
    cfg.excerpt_sets = False
    plain = evaluate_heldout(cfg, {"model": net}, bundle_config)
    assert plain["config"]["excerpt_sets"] is False
    assert "identification_vectors_only" not in plain["features"]["model"]
    assert plain["features"]["model"]["identification"] == model["identification_vectors_only"]
    assert "no excerpt-set re-ranking" in markdown(plain)


def test_a_root_without_manifest_is_a_clear_error(bundle, tmp_path, capsys, one_torch_thread):
    """A wrong --root says which file is missing and how to make it, with no traceback."""
    empty = tmp_path / "not-a-corpus"
    empty.mkdir()
    out = tmp_path / "out"
    argv = ["corpus", "evaluate", str(bundle), "--root", str(empty), "--out", str(out)]
    assert main([*argv, "--cache", str(tmp_path / "cache"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert str(empty / "manifest.jsonl") in err and "corpus build" in err
    assert "Traceback" not in err
    assert not (out / "results.json").exists()
