"""Teacher labels for the real soundtracks, from musicnn's MagnaTagATune model.

The synthetic pieces teach the tag vocabulary, but only in General MIDI timbres; real recordings
have no tags at all. musicnn (Pons & Serra, ISC licence, MTT ROC-AUC 0.907) was trained on real
music with a vocabulary that shares 26 of our 30 tags, so its confident calls on the training
soundtracks are a real-music signal for fine-tuning. It runs only here, at recipe time, in its
own environment (`musicnn_runner.py`); the shipped model never needs TensorFlow.

A teacher probability becomes a yes, a no, or nothing. MTT's labels are sparse, so the model's
probabilities are low in general (a clear guitar track scores ~0.4): `POSITIVE_AT` marks the
confident yeses, `NEGATIVE_BELOW` the confident noes, and everything between stays unknown —
the fine-tuning loss masks unknown labels, as it does for a user's partly tagged library. The
labels enter the corpus's training library as yes/no tags through the library API, exactly the
way a user's own tags would; tags musicnn does not have (organ, bass, brass, jazz) stay unknown.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from musicssl.engine.library import Library

from ..config import ConfigError
from .manifest import Entry, read_manifest

log = logging.getLogger(__name__)

__all__ = [
    "NEGATIVE_BELOW",
    "POSITIVE_AT",
    "TEACHER_FILE",
    "TeacherLabels",
    "label_tracks",
    "read_teacher",
    "run_teacher",
    "teacher_labels",
]

TEACHER_FILE = "teacher-musicnn.json"
RUNNER = Path(__file__).with_name("musicnn_runner.py")
POSITIVE_AT = 0.3
NEGATIVE_BELOW = 0.05


@dataclass
class TeacherLabels:
    """musicnn's output for the corpus's real files, keyed by manifest path (root-relative)."""

    tags: list[str]  # the 50 MTT tags, in the teacher's order
    probs: dict[str, np.ndarray]  # path -> (50,) mean sigmoid over the track's patches
    features: dict[str, np.ndarray]  # path -> (753,) mean max-pool features (a retrieval peer)
    errors: dict[str, str]


def _real(entries: Sequence[Entry]) -> list[Entry]:
    return [e for e in entries if e.source == "real"]


def run_teacher(root: Path, python: str, patches: int = 20) -> Path:
    """Tag every real file of the manifest with musicnn; files tagged by an earlier run are kept.

    `python` is the interpreter of the teacher environment (`make teacher`). Adding a soundtrack
    to the recipe only runs the teacher over its files, so earlier labels stay bit-identical.
    """
    if shutil.which(python) is None:
        raise FileNotFoundError(
            f"{python}: no teacher interpreter; `make teacher` creates .venv-teacher with "
            "tensorflow-cpu, tf-keras and musicnn"
        )
    out = root / TEACHER_FILE
    wanted = [e.path for e in _real(read_manifest(root))]
    done = read_teacher(root) if out.is_file() else None
    todo = [p for p in wanted if done is None or (p not in done.probs and p not in done.errors)]
    if not todo:
        log.info("teacher labels already cover the %d real files: %s", len(wanted), out)
        return out
    part = out.with_name(out.stem + ".new.json")
    log.info("musicnn over %d real files (%d patches each)", len(todo), patches)
    ran = subprocess.run(
        [python, str(RUNNER), str(part), "--patches", str(patches)],
        input="".join(f"{root / p}\n" for p in todo),
        text=True,
    )
    if ran.returncode != 0:
        raise ConfigError(f"the musicnn runner failed (exit {ran.returncode}); see its output")
    if done is None:
        part.replace(out)
        return out
    merged = json.loads(out.read_text(encoding="utf-8"))
    new = json.loads(part.read_text(encoding="utf-8"))
    if new["tags"] != merged["tags"]:
        raise ConfigError(f"{part}: the teacher's tag list changed; delete {out} and rerun")
    merged["tracks"].update(new["tracks"])
    merged["errors"].update(new["errors"])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(merged), encoding="utf-8")
    tmp.replace(out)
    part.unlink()
    return out


def read_teacher(root: Path) -> TeacherLabels:
    """The teacher's file with paths made root-relative again (the runner saw absolute ones)."""
    raw = json.loads((root / TEACHER_FILE).read_text(encoding="utf-8"))
    prefix = f"{root.absolute()}{os.sep}"

    def rel(path: str) -> str:
        return path[len(prefix) :] if path.startswith(prefix) else path

    tracks = raw["tracks"]
    return TeacherLabels(
        tags=list(raw["tags"]),
        probs={rel(p): np.asarray(v["probs"], np.float32) for p, v in tracks.items()},
        features={rel(p): np.asarray(v["max_pool"], np.float32) for p, v in tracks.items()},
        errors={rel(p): m for p, m in raw["errors"].items()},
    )


def teacher_labels(teacher: TeacherLabels, path: str, vocab: Sequence[str]) -> dict[str, float]:
    """One file's confident yes (1.0) / no (0.0) labels for the tags both vocabularies share."""
    probs = teacher.probs.get(path)
    if probs is None:
        return {}
    column = {t: j for j, t in enumerate(teacher.tags)}
    labels: dict[str, float] = {}
    for tag in vocab:
        j = column.get(tag.casefold())
        if j is None:
            continue
        if probs[j] >= POSITIVE_AT:
            labels[tag] = 1.0
        elif probs[j] < NEGATIVE_BELOW:
            labels[tag] = 0.0
    return labels


def label_tracks(root: Path, library: Path, vocab: Sequence[str]) -> dict[str, int]:
    """Write the teacher's yes/no labels for the real tracks of the training library.

    Earlier teacher labels are replaced: in the corpus's own library every user tag on a real
    track is the teacher's (the synthetic pieces' tags are file tags and are left alone).
    Returns counts of yes and no labels written.
    """
    teacher = read_teacher(root)
    by_path = {str((root / e.path).absolute()): e for e in _real(read_manifest(root))}
    counts = {"tracks": 0, "yes": 0, "no": 0}
    with Library(library) as lib:
        for row in lib.tracks(order_by="id"):
            entry = by_path.get(str(Path(row["path"]).absolute()))
            if entry is None:
                continue
            for tag in lib.tags(row["id"]):
                if tag["source"] == "user":
                    lib.remove_user_tag(row["id"], tag["tag"])
            labels = teacher_labels(teacher, entry.path, vocab)
            for tag, value in labels.items():
                lib.set_user_tag(row["id"], tag, value >= 0.5)
            counts["tracks"] += 1
            counts["yes"] += sum(v >= 0.5 for v in labels.values())
            counts["no"] += sum(v < 0.5 for v in labels.values())
    return counts
