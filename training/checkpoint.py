"""Training checkpoints: everything needed to continue a run exactly, and nothing pickled.

A checkpoint is one `torch.save` file read back with `torch.load(weights_only=True)`, so it may
hold only tensors and plain containers of primitives. Hence the configs are stored as plain
dicts, numpy's RNG state as a tensor plus integers, and Python's as a list. Loading a checkpoint
therefore never runs code from the file, the same rule the model bundles follow.

Layout of a run folder:

    <out>/checkpoints/step-00000500.pt   periodic (the newest `keep` are kept)
    <out>/best.pt                        fine-tuning: the weights with the best validation score
    <out>/config.toml, log.csv, curves.png
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from musicssl.engine.bundle import (
    BundleConfig,
    BundleError,
    build_model,
    load_bundle,
)
from musicssl.engine.embedding_model import EmbeddingModel
from musicssl.engine.errors import MusicSSLError

from .config import DataConfig, from_dict

FORMAT = "musicssl-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
BEST_NAME = "best.pt"
_STEP_RE = re.compile(r"^step-(\d+)\.pt$")


class CheckpointError(MusicSSLError, RuntimeError):
    """A checkpoint that cannot be used; the message names the file (shown to the user)."""


# ---------------------------------------------------------------------------------------------
# RNG state


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every random stream a run draws from, as tensors/primitives (see the module doc)."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": int(py_version), "state": list(py_state), "gauss": py_gauss},
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(
    state: dict[str, Any], generators: dict[str, torch.Generator] | None = None
) -> None:
    """Restore what `rng_state` captured; named generators must exist on both sides."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
    saved = state.get("generators", {})
    for name, generator in (generators or {}).items():
        if name in saved:
            generator.set_state(saved[name].to(generator.get_state().device))


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's `random` (model init and any library that uses them)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# files


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write atomically (temp file + rename): a crash mid-save leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    """Read a checkpoint without unpickling code; raises `CheckpointError` naming the file."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise CheckpointError(f"{path}: not a readable MusicSSL checkpoint: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a MusicSSL training checkpoint")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer MusicSSL; upgrade to resume it")
    return state


def step_path(out: str | os.PathLike[str], step: int) -> Path:
    return Path(out) / CHECKPOINT_DIR / f"step-{step:08d}.pt"


def list_checkpoints(out: str | os.PathLike[str]) -> list[Path]:
    """Periodic checkpoints of a run folder (or a checkpoints folder), oldest first."""
    folder = Path(out)
    if (folder / CHECKPOINT_DIR).is_dir():
        folder = folder / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(out: str | os.PathLike[str]) -> Path | None:
    found = list_checkpoints(out)
    return found[-1] if found else None


def prune_checkpoints(out: str | os.PathLike[str], keep: int) -> None:
    """Delete all but the newest `keep` periodic checkpoints (keep <= 0 keeps everything)."""
    if keep <= 0:
        return
    for old in list_checkpoints(out)[:-keep]:
        old.unlink(missing_ok=True)


def resolve_checkpoint(path: str | os.PathLike[str], prefer_best: bool = True) -> Path:
    """A checkpoint file from a file, a checkpoints folder or a run folder.

    For a run folder, fine-tuning's `best.pt` wins over the newest periodic checkpoint when
    `prefer_best` (export and evaluation want the selected weights, resuming wants the newest).
    """
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if prefer_best and (path / BEST_NAME).is_file():
            return path / BEST_NAME
        latest = latest_checkpoint(path)
        if latest is not None:
            return latest
        raise CheckpointError(f"{path}: no checkpoint in this folder")
    raise CheckpointError(f"{path}: no such checkpoint or run folder")


def run_folder(checkpoint: Path) -> Path:
    """The run folder a checkpoint file belongs to (periodic ones sit in its checkpoints/)."""
    parent = checkpoint.parent
    return parent.parent if parent.name == CHECKPOINT_DIR else parent


# ---------------------------------------------------------------------------------------------
# models out of checkpoints and bundles


def model_from_state(state: dict[str, Any], source: str = "checkpoint") -> EmbeddingModel:
    """The EmbeddingModel a checkpoint holds, on CPU, in eval mode."""
    try:
        config = BundleConfig.from_dict(state["bundle_config"], f"{source} (bundle_config)")
        model = build_model(config, source)
        model.load_state_dict(state["model"], strict=True)
    except KeyError as exc:
        raise CheckpointError(f"{source}: checkpoint lacks {exc}") from None
    except (RuntimeError, BundleError) as exc:
        raise CheckpointError(f"{source}: weights do not fit the recorded model: {exc}") from None
    model.eval()
    return model


def is_bundle(path: str | os.PathLike[str]) -> bool:
    path = Path(path).expanduser()
    return (path / "config.json").is_file() or (path.is_file() and path.suffix == ".zip")


def load_model(path: str | os.PathLike[str]) -> tuple[EmbeddingModel, BundleConfig, dict[str, Any]]:
    """(model, bundle config, checkpoint state or {}) from a bundle, checkpoint or run folder.

    Lets `--init`, `evaluate` and `export` take whichever the user has: a pre-training run, a
    fine-tuning run's best weights, or an installed/shipped bundle.
    """
    path = Path(path).expanduser()
    if is_bundle(path):
        bundle = load_bundle(path)
        return bundle.model, bundle.config, {}
    file = resolve_checkpoint(path)
    state = load_checkpoint(file)
    model = model_from_state(state, str(file))
    config = BundleConfig.from_dict(state["bundle_config"], str(file))
    return model, config, state


def _source(data: DataConfig) -> tuple[str, str] | None:
    for kind in ("library", "folder"):
        value = getattr(data, kind)
        if value:
            return kind, str(Path(value).expanduser().resolve())
    return None


def checkpoint_data(state: dict[str, Any], given: DataConfig | None = None) -> DataConfig | None:
    """The data a step after training (threshold tuning, head refit) works on: by default, and
    always for the training data itself, the checkpoint's own settings, so "validation" is the
    split training held out.

    Naming the training library again (`--library`) must not swap in default split settings:
    a different split would tune on tracks the model was trained on.
    """
    raw = (state.get("config") or {}).get("data")
    saved = from_dict(DataConfig, raw, "checkpoint data") if raw else None
    given = given if given is not None and _source(given) else None
    if given is None or (saved is not None and _source(given) == _source(saved)):
        return saved
    return given


def transfer_weights(
    source: EmbeddingModel, target: EmbeddingModel, tags_too: bool = True
) -> list[str]:
    """Copy the encoder (and head rows of tags both vocabularies share); returns copied tags.

    A pre-trained encoder has no (or other) tags; fine-tuning needs a head for its own
    vocabulary, so the encoder is copied whole and head rows only where the tag is the same.
    """
    target.encoder.load_state_dict(source.encoder.state_dict(), strict=True)
    shared: list[str] = []
    if tags_too and source.n_tags and target.n_tags:
        with torch.no_grad():
            for i, tag in enumerate(target.tags):
                if tag in source.tags:
                    target.tag_head.weight[i] = source.tag_head.weight[source.tags.index(tag)]
                    shared.append(tag)
    return shared


def parameter_digest(modules: Iterable[torch.nn.Module]) -> float:
    """A cheap fingerprint of weights (for logs and tests comparing runs)."""
    total = 0.0
    for module in modules:
        for p in module.state_dict().values():
            if p.is_floating_point():
                total += float(p.double().abs().sum())
    return total


__all__ = [
    "BEST_NAME",
    "CHECKPOINT_DIR",
    "CheckpointError",
    "checkpoint_data",
    "is_bundle",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_model",
    "model_from_state",
    "parameter_digest",
    "prune_checkpoints",
    "resolve_checkpoint",
    "run_folder",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
    "step_path",
    "transfer_weights",
]
