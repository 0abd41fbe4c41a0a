"""Measure a model on the corpus's held-out parts only (the manifest's test split).

`musicssl-train evaluate` splits one dataset at random by album; the corpus instead fixes what
is held out, so this module scores on exactly that:
- real test soundtracks: retrieval with the soundtrack as the class (R@K, M@K) and first-half
  -> second-half track identification;
- synthetic test pieces (rendered with the other soundfont): the model's own tag head, and
  frozen probes trained on the synthetic train split (early-stopped on val), for the shipped tag
  vocabulary and for each probe facet (instrument, genre, tempo class, mode);
- the same for the baselines: MFCC/spectral statistics and the same network at random init;
- where the corpus has musicnn teacher output (`corpus teacher`): the own head's agreement with
  the teacher's confident yes/no calls on the real soundtracks (the only tag signal on real
  music the corpus has), how many tags the head's thresholds put on each real track, and
  musicnn's own max-pool features as a retrieval peer (z-scored, as DESIGN.md measured them).
Embeddings and probes are the ones `evaluate` uses, so the two reports mean the same thing.

`split="val"` scores the validation soundtrack and pieces instead of the test ones (the probes
then early-stop on what they are scored on, so only compare such numbers with each other): it
is how two candidate runs are compared without looking at the test split. The report's keys
keep their names ("real_test" = the real tracks scored).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from musicssl.engine.bundle import BundleConfig, build_model
from musicssl.engine.embedding_model import EmbeddingModel
from musicssl.engine.excerpt_sets import blended_matrix
from musicssl.engine.excerpts import DEFAULT_COUNT

from .. import metrics
from ..config import ConfigError, DataConfig
from ..datasets import TrackItem, label_matrix, subsample_labels, vocabulary
from ..evaluate import (
    ProbeSettings,
    embed_tracks,
    handcrafted_features,
    json_safe,
    known_labels,
    train_probe,
    zscore,
)
from ..pretrain import open_cache, warm_cache
from .manifest import Entry, read_manifest, to_items
from .teacher import TEACHER_FILE, read_teacher, teacher_labels

log = logging.getLogger(__name__)

__all__ = ["FACETS", "HeldoutConfig", "evaluate_heldout", "markdown", "write_results"]

FACETS = ("instrument", "genre", "tempo", "mode")
TAGS = "tags"  # the shipped vocabulary as a probe task
BASELINES = ("mfcc", "random-init")


@dataclass
class HeldoutConfig:
    root: Path
    cache_dir: Path | None = None
    excerpts: int = DEFAULT_COUNT
    batch_size: int = 32
    probes: list[str] = field(default_factory=lambda: ["mlp"])
    fractions: list[float] = field(default_factory=lambda: [1.0])
    tasks: list[str] = field(default_factory=lambda: [TAGS])
    baselines: list[str] = field(default_factory=lambda: ["mfcc", "random-init"])
    split: str = "test"  # "val" to compare candidate runs without touching the test split
    # Rank real tracks as the app does, blending in excerpt-set matching (engine/excerpt_sets.py);
    # False ranks by cosine of the track vectors alone (what `experiments` compares).
    excerpt_sets: bool = True
    seed: int = 0
    progress: bool = False


def _select(entries: Sequence[Entry], source: str, split: str) -> list[Entry]:
    return [e for e in entries if e.source == source and e.split == split]


def _features(
    model: EmbeddingModel | None,
    items: dict[str, list[TrackItem]],
    cache,
    crop_samples: int,
    cfg: HeldoutConfig,
) -> dict[str, Any]:
    """Per part: probe features ("h"), retrieval vectors ("z"), halves and head probabilities."""
    out: dict[str, Any] = {}
    for part, part_items in items.items():
        if model is None:
            stats = handcrafted_features(
                part_items, cache, crop_samples, cfg.excerpts, cfg.progress
            )
            out[part] = {"stats": stats}
        else:
            o = embed_tracks(
                model,
                part_items,
                cache,
                crop_samples,
                "cpu",
                cfg.excerpts,
                cfg.batch_size,
                cfg.progress,
                with_sets=cfg.excerpt_sets,
            )
            out[part] = {
                "h": o.h,
                "z": o.z,
                "first": o.first,
                "second": o.second,
                "p": o.probs,
            }
            if cfg.excerpt_sets:
                out[part].update(sets=o.sets, first_sets=o.first_sets, second_sets=o.second_sets)
    if model is None:  # bliss-style: z-score over everything it sees, then cosine
        corpus = np.concatenate([out[p]["stats"].whole for p in out])
        for p in out:
            stats = out[p].pop("stats")
            z = stats.zscored(corpus)
            out[p] = {"h": stats.whole, "z": z.whole, "first": z.first, "second": z.second}
    return out


def _probe_scores(
    feats: dict[str, Any], items: dict[str, list[TrackItem]], cfg: HeldoutConfig
) -> dict[str, Any]:
    """Frozen probes trained on synthetic train features, early-stopped on val, scored on test."""
    vocab = vocabulary(items["synth_train"])
    y_val, m_val = known_labels(items["synth_val"], vocab)
    y_test, m_test = known_labels(items["synth_test"], vocab)
    scores: dict[str, Any] = {}
    for fraction in cfg.fractions:
        train = items["synth_train"]
        subset = subsample_labels(train, fraction, seed=cfg.seed) if fraction < 1 else train
        y_tr, m_tr = known_labels(subset, vocab)
        rows = m_tr.any(axis=1)
        for probe in cfg.probes:
            predict = train_probe(
                probe,
                feats["synth_train"]["h"][rows],
                y_tr[rows],
                m_tr[rows],
                feats["synth_val"]["h"],
                y_val,
                m_val,
                ProbeSettings(seed=cfg.seed),
            )
            score = metrics.tagging_metrics(predict(feats["synth_test"]["h"]), y_test, m_test)
            score["labelled_tracks"] = int(rows.sum())
            scores.setdefault(probe, {})[f"{fraction:g}"] = score
    return scores


def _head_scores(model: EmbeddingModel, feats: dict[str, Any], items) -> dict[str, float]:
    vocab = [t for t in vocabulary(items["synth_train"]) if t in model.tags]
    if not vocab:
        return {}
    y, m = known_labels(items["synth_test"], vocab)
    columns = [model.tags.index(t) for t in vocab]
    return metrics.tagging_metrics(feats["synth_test"]["p"][:, columns], y, m)


def _real_tag_scores(
    model: EmbeddingModel,
    probs: np.ndarray,
    real: Sequence[Entry],
    teacher,
    thresholds: Sequence[float],
) -> dict[str, Any]:
    """The head on real tracks: agreement with the teacher, and how many tags it hands out.

    Agreement is macro ROC-AUC/PR-AUC against musicnn's confident yes/no calls (tags the two
    vocabularies share; unsure calls are left out), and macro F1 of the tags the bundle's own
    thresholds hand out (0.5 for a checkpoint without any) against the same calls. Tags per
    track use those thresholds too: a tag on nearly every track says nothing.
    """
    vocab = list(model.tags)
    y, m = label_matrix(
        [TrackItem(path=e.path, labels=teacher_labels(teacher, e.path, vocab)) for e in real],
        vocab,
    )
    out: dict[str, Any] = dict(metrics.tagging_metrics(probs, y, m))
    on = probs >= np.asarray(thresholds, np.float32)[None, :]
    out["f1"] = metrics.macro_f1(on, y, m)
    share = on.mean(axis=0)
    out["tags_per_track"] = float(on.sum(axis=1).mean())
    out["widest_tag"] = vocab[int(share.argmax())]
    out["widest_tag_share"] = float(share.max())
    return out


def evaluate_heldout(
    cfg: HeldoutConfig,
    models: dict[str, EmbeddingModel],
    bundle_config: BundleConfig,
) -> dict[str, Any]:
    """Scores for each named model and the configured baselines (see the module doc)."""
    # Checked before any decoding: a typo must not cost a pass over the whole corpus.
    if cfg.split not in ("val", "test"):
        raise ConfigError(f"split must be 'val' or 'test', got {cfg.split!r}")
    unknown = [t for t in cfg.tasks if t not in (TAGS, *FACETS)]
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown} (use {', '.join((TAGS, *FACETS))})")
    unknown = [b for b in cfg.baselines if b not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {unknown} (use {', '.join(BASELINES)})")
    entries = read_manifest(cfg.root)
    synth = {s: _select(entries, "synth", s) for s in ("train", "val", "test")}
    synth["test"] = synth[cfg.split]
    real_test = _select(entries, "real", cfg.split)
    data = DataConfig(cache_dir=str(cfg.cache_dir) if cfg.cache_dir else None)
    cache = open_cache(data, bundle_config.sample_rate)
    crop = bundle_config.excerpt_samples
    everything = to_items(cfg.root, [*synth["train"], *synth["val"], *synth["test"], *real_test])
    # Undecodable files (warned about by warm_cache) are left out of every part and count.
    kept = {item.path for item in warm_cache(cache, everything, data, cfg.progress)}

    def decodable(part: list[Entry]) -> list[Entry]:
        return [e for e in part if str((cfg.root / e.path).resolve()) in kept]

    synth = {s: decodable(v) for s, v in synth.items()}
    real_test = decodable(real_test)

    task_items = {
        task: {
            f"synth_{s}": to_items(cfg.root, synth[s], None if task == TAGS else task)
            for s in synth
        }
        for task in {TAGS, *cfg.tasks}
    }
    # Embeddings only need the paths; the model's own head is always scored on the tags.
    items = {**task_items[TAGS], "real_test": to_items(cfg.root, real_test)}

    sets: dict[str, EmbeddingModel | None] = dict(models)
    for baseline in cfg.baselines:
        if baseline == "mfcc":
            sets["mfcc"] = None
        else:  # random-init (checked above)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                sets["random-init"] = build_model(bundle_config)

    teacher = read_teacher(cfg.root) if (cfg.root / TEACHER_FILE).is_file() else None
    results: dict[str, Any] = {}
    for name, model in sets.items():
        log.info("held-out evaluation: %s", name)
        feats = _features(model, items, cache, crop, cfg)
        entry: dict[str, Any] = {
            "probes": {t: _probe_scores(feats, task_items[t], cfg) for t in cfg.tasks}
        }
        if model is not None and model.n_tags and name != "random-init":
            entry["head"] = _head_scores(model, feats, items)
            if teacher is not None:
                # The bundle's thresholds belong to its own model (experiments pass several).
                own = list(model.tags) == list(bundle_config.tags) and bundle_config.thresholds
                thresholds = bundle_config.thresholds if own else [0.5] * model.n_tags
                entry["real_tags"] = _real_tag_scores(
                    model, feats["real_test"]["p"], real_test, teacher, thresholds
                )
        real = feats["real_test"]
        labels = [i.album for i in items["real_test"]]
        ranking = None
        if "sets" in real:  # the app's ranking: cosine + set matching
            ranking = blended_matrix(real["z"], real["sets"], real["z"], real["sets"])
        entry["retrieval"] = metrics.retrieval_metrics(real["z"], labels, similarities=ranking)
        if "first" in real:
            first, second = real["first"], real["second"]
            ok = ~np.isnan(first).any(axis=1)
            ranking = None
            if "first_sets" in real:
                keep = np.flatnonzero(ok)
                ranking = blended_matrix(
                    first[ok],
                    [real["first_sets"][i] for i in keep],
                    second[ok],
                    [real["second_sets"][i] for i in keep],
                )
                # Track vectors alone, as v1-v9 were measured: the set matching's share.
                plain = metrics.identification_hits(first[ok], second[ok])
                entry["identification_vectors_only"] = float(plain.mean()) if len(plain) else None
            hits = metrics.identification_hits(first[ok], second[ok], ranking)
            entry["identification"] = float(hits.mean()) if len(hits) else float("nan")
            # Among all tracks, scored per query's soundtrack: where identity is hard to hear.
            albums = np.asarray([e.album for e in real_test])[ok]
            entry["identification_by_soundtrack"] = {
                album: float(hits[albums == album].mean()) for album in sorted(set(albums))
            }
        results[name] = entry
    if teacher is not None and all(e.path in teacher.features for e in real_test):
        musicnn = np.stack([teacher.features[e.path] for e in real_test])
        labels = [e.album for e in real_test]
        results["musicnn max-pool"] = {
            "probes": {},
            "retrieval": metrics.retrieval_metrics(zscore(musicnn), labels),
        }
    return {
        "features": results,
        "counts": {
            "split": cfg.split,
            **{f"synth_{s}": len(v) for s, v in synth.items()},
            "real_test": len(real_test),
            "real_test_soundtracks": sorted({e.album for e in real_test}),
        },
        "config": {
            "excerpts": cfg.excerpts,
            "probes": cfg.probes,
            "fractions": cfg.fractions,
            "tasks": cfg.tasks,
            "baselines": cfg.baselines,
            "seed": cfg.seed,
            "excerpt_sets": cfg.excerpt_sets,
        },
    }


def _fmt(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and value != value) else f"{value:.3f}"


def markdown(report: dict[str, Any]) -> str:
    """Tables: tagging on synthetic test pieces, retrieval/identification on real soundtracks."""
    counts = report["counts"]
    split = counts.get("split", "test")
    lines = [
        f"Scored on the {split} split: {counts['synth_test']} synthetic pieces"
        f"{' (other soundfont)' if split == 'test' else ''}; {counts['real_test']} tracks of "
        f"{len(counts['real_test_soundtracks'])} soundtracks "
        f"({', '.join(counts['real_test_soundtracks'])}).",
        "",
        "| features | task | probe | labels | ROC-AUC | PR-AUC |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in report["features"].items():
        if entry.get("head"):
            head = entry["head"]
            lines.append(
                f"| {name} | tags | own head | 100% | {_fmt(head.get('roc_auc'))} | "
                f"{_fmt(head.get('pr_auc'))} |"
            )
        for task, by_probe in entry["probes"].items():
            for probe, by_fraction in by_probe.items():
                for fraction, s in by_fraction.items():
                    lines.append(
                        f"| {name} | {task} | {probe} | {float(fraction):.0%} | "
                        f"{_fmt(s.get('roc_auc'))} | {_fmt(s.get('pr_auc'))} |"
                    )
    keys = [f"R@{k}" for k in metrics.RECALL_KS] + [f"M@{k}" for k in metrics.MAP_KS]
    ranking = (
        "Models rank as the app does: cosine of the track vectors blended with excerpt-set "
        "matching (engine/excerpt_sets.py); the last column ranks by the track vectors alone. "
        "The MFCC baseline has no excerpt sets."
        if report["config"].get("excerpt_sets", True)
        else "Ranked by cosine of the track vectors alone (no excerpt-set re-ranking)."
    )
    lines += [
        "",
        ranking,
        "",
        "| features | " + " | ".join(keys) + " | identification | identification (vectors only) |",
        "|" + "---|" * (len(keys) + 3),
    ]
    for name, entry in report["features"].items():
        cells = [_fmt(entry["retrieval"].get(k)) for k in keys]
        cells += [_fmt(entry.get(k)) for k in ("identification", "identification_vectors_only")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, entry in report["features"].items():
        if entry.get("identification_by_soundtrack"):
            parts = [f"{a} {_fmt(v)}" for a, v in entry["identification_by_soundtrack"].items()]
            lines += ["", f"Identification per soundtrack ({name}): " + ", ".join(parts) + "."]
    real = {name: e["real_tags"] for name, e in report["features"].items() if e.get("real_tags")}
    if real:
        lines += [
            "",
            "Own head on the real tracks: agreement with musicnn's confident calls (n = tags "
            "with a yes and a no), and what the bundle's thresholds hand out (F1 against the "
            "same calls).",
            "",
            "| features | ROC-AUC vs musicnn | PR-AUC | n | F1 (thresholds) | tags per track "
            "| widest tag (share) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in real.items():
            lines.append(
                f"| {name} | {_fmt(r.get('roc_auc'))} | {_fmt(r.get('pr_auc'))} | {r['n_tags']} | "
                f"{_fmt(r.get('f1'))} | {r['tags_per_track']:.1f} | {r['widest_tag']} "
                f"({r['widest_tag_share']:.0%}) |"
            )
    return "\n".join(lines) + "\n"


def write_results(report: dict[str, Any], out: Path) -> None:
    """results.json (NaN as null) and results.md into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(report), indent=2, allow_nan=False)  # NaN -> null, names intact
    (out / "results.json").write_text(text + "\n", encoding="utf-8")
    (out / "results.md").write_text(markdown(report), encoding="utf-8")
