"""`soup`: one network whose weights are the mean of several fine-tuning runs' weights.

Why: fine-tuning one pre-trained encoder again with another seed moved validation identification
by two of 103 tracks (docs/MODEL_CARD.md), as much as any change tried since v6, so picking the
best of a few seeds on validation mostly picks noise. Fine-tuned copies of one pre-trained start
stay close enough for their weights to be averaged ("model soups", Wortsman et al., ICML 2022):
the soup is one network of the same size and speed, which is what the app runs, where an
ensemble would multiply analysis time. BatchNorm's running statistics are averaged with the rest;
refit-head and whiten then run on the soup, so its tag head and whitening fit its own features.
Measured on the shipped model's four seeds: the soup scored their mean on validation, not above
it (docs/MODEL_CARD.md, v9), so it removes the luck of a pick rather than adding quality.

Only runs that can be averaged are accepted: the same architecture, tags, pre-trained start and
training data (so the soup's validation split is every member's).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .checkpoint import BEST_NAME, load_checkpoint, resolve_checkpoint, save_checkpoint
from .config import ConfigError
from .evaluate import json_safe

RESULT_NAME = "soup.json"
# Recorded per member in the soup's record; left out of the soup's own top level, where export
# would report one member's numbers as the soup's.
MEMBER_RECORDS = ("step", "metrics", "ratio", "lambda")


def _must_match(name: str, values: Sequence[Any], sources: Sequence[Path]) -> None:
    if any(v != values[0] for v in values[1:]):
        odd = next(s for s, v in zip(sources, values, strict=True) if v != values[0])
        raise ConfigError(f"cannot average {odd} with {sources[0]}: their {name} differ")


def average_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors (in float64); integer tensors, such as
    BatchNorm's batch counters, are taken from the first state."""
    first = states[0]
    mean: dict[str, torch.Tensor] = {}
    for key, value in first.items():
        if value.is_floating_point():
            total = sum(state[key].double() for state in states)
            mean[key] = (total / len(states)).to(value.dtype)
        else:
            mean[key] = value.clone()
    return mean


def soup(sources: Sequence[str | Path], out: str | Path) -> Path:
    """Write `<out>/best.pt` (the averaged weights, carrying the first member's configuration)
    and `<out>/soup.json`; refit-head, whiten and export read the folder like any run."""
    if len(sources) < 2:
        raise ConfigError("a soup needs at least two fine-tuning runs")
    paths = [resolve_checkpoint(Path(s).expanduser()) for s in sources]
    states = [load_checkpoint(p) for p in paths]
    for state, path in zip(states, paths, strict=True):
        if state.get("kind") != "finetune":
            raise ConfigError(f"{path} is not a fine-tuning checkpoint (kind {state.get('kind')})")
    config = [s.get("config") or {} for s in states]
    _must_match("architectures and tags", [s["bundle_config"] for s in states], paths)
    _must_match("pre-trained starts (--init)", [c.get("init") for c in config], paths)
    _must_match("training data", [c.get("data") for c in config], paths)
    weights = [s["model"] for s in states]
    _must_match(
        "weights' names and shapes",
        [{k: tuple(v.shape) for k, v in w.items()} for w in weights],
        paths,
    )

    members = [
        {"checkpoint": str(p), "seed": c.get("seed")}
        | {key: s[key] for key in MEMBER_RECORDS if key in s}
        for p, c, s in zip(paths, config, states, strict=True)
    ]
    record = {"method": "uniform weight average", "members": json_safe(members)}
    state = {k: v for k, v in states[0].items() if k not in MEMBER_RECORDS}
    state.update({"model": average_states(weights), "soup": record})
    folder = Path(out).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / BEST_NAME, state)
    (folder / RESULT_NAME).write_text(json.dumps(record, indent=2) + "\n", "utf-8")
    return folder


__all__ = ["RESULT_NAME", "average_states", "soup"]
