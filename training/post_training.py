"""What the steps after training (refit-head, whiten) share: a finished run, opened on its data.

Both take a run folder or checkpoint, never a bundle (a bundle has no training split), work on
the data and album-wise split the run trained on (`checkpoint.checkpoint_data`, so "validation"
is what training held out), and write a new run folder that export reads like any other: the
run's identity and the records of earlier steps are carried along, so the steps chain in any
order (refit-head then whiten, or the reverse).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from musicssl.engine.bundle import BundleConfig
from musicssl.engine.device import select_device
from musicssl.engine.embedding_model import EmbeddingModel
from musicssl.engine.statistics import Statistic, measure
from tqdm import tqdm

from .audio_cache import AudioCache
from .checkpoint import (
    BEST_NAME,
    checkpoint_data,
    is_bundle,
    load_model,
    resolve_checkpoint,
    run_folder,
    save_checkpoint,
)
from .config import ConfigError, DataConfig, to_dict
from .datasets import TrackItem
from .evaluate import json_safe
from .pretrain import load_items, open_cache, split_items
from .sampler import excerpts_of

# What a step passes on from its source checkpoint besides the weights it rewrites.
CARRIED = ("kind", "step", "ratio", "lambda", "metrics", "soup", "refit", "whitening")


@dataclass
class FinishedRun:
    source: Path
    model: EmbeddingModel  # on `device`, in eval mode
    bundle_config: BundleConfig
    state: dict[str, Any]
    data: DataConfig
    out: Path  # where the step writes its run folder
    device: torch.device
    train: list[TrackItem]
    val: list[TrackItem]
    cache: AudioCache


def open_finished_run(
    checkpoint: str,
    data: DataConfig | None,
    out: str,
    step: str,
    device: str = "auto",
    threads: int | None = None,
) -> FinishedRun:
    """Load `checkpoint` for a post-training step; its default output folder is `<run>/<step>`."""
    source = Path(checkpoint).expanduser()
    if is_bundle(source):
        raise ConfigError(
            f"{source} is a bundle, which has no training split: give the training run folder "
            "or a checkpoint"
        )
    model, bundle_config, state = load_model(source)
    data_cfg = checkpoint_data(state, data)
    if data_cfg is None:
        raise ConfigError(f"{source}: no training data recorded; give --library")
    folder = Path(out or run_folder(resolve_checkpoint(source)) / step).expanduser()
    if threads:
        torch.set_num_threads(threads)
    where = select_device(device)
    model.to(where).eval()
    train, val, _test = split_items(data_cfg, load_items(data_cfg))
    cache = open_cache(data_cfg, bundle_config.sample_rate)
    return FinishedRun(
        source, model, bundle_config, state, data_cfg, folder, where, train, val, cache
    )


@torch.no_grad()
def excerpt_embeddings(
    run: FinishedRun,
    items: Sequence[TrackItem],
    max_excerpts: int | None,
    batch_size: int = 64,
    progress: bool = False,
    statistics: Sequence[Statistic] = (),
) -> tuple[torch.Tensor, np.ndarray]:
    """h (E, D) of every excerpt (or `max_excerpts` evenly spread ones) of each track, on CPU,
    and each excerpt's track index. Batches never mix tracks and hold at most `batch_size`.
    Each row is followed by the excerpt's `statistics` (engine/statistics.py), if any."""
    crop = run.bundle_config.excerpt_samples
    rate = run.bundle_config.sample_rate
    hs, track = [], []
    for i, item in enumerate(tqdm(items, desc="features", disable=not progress, leave=False)):
        x = excerpts_of(run.cache, item, crop, max_excerpts)
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(x[start : start + batch_size])
            h = run.model.encode(batch.to(run.device)).float().cpu()
            hs.append(torch.cat([h, measure(statistics, batch, rate)], 1))
        track.extend([i] * len(x))
    width = run.model.embedding_dim + sum(s.dim for s in statistics)
    h = torch.cat(hs) if hs else torch.zeros((0, width))
    return h, np.asarray(track, np.int64)


def save_step(
    run: FinishedRun,
    model: EmbeddingModel,
    bundle_config: BundleConfig,
    result_name: str,
    summary: dict[str, Any],
    **records: Any,
) -> Path:
    """Write `<out>/best.pt` and `<out>/<result_name>`; `records` add or replace top-level
    checkpoint entries (e.g. `refit=summary`)."""
    state = {key: run.state[key] for key in CARRIED if key in run.state}
    state.update(
        {
            # Export tunes thresholds on the data recorded here: the data the step worked on.
            "config": {**run.state.get("config", {}), "data": to_dict(run.data)},
            "bundle_config": bundle_config.to_dict(),
            "model": model.state_dict(),
            **records,
        }
    )
    run.out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run.out / BEST_NAME, state)
    text = json.dumps(json_safe(summary), indent=2) + "\n"
    (run.out / result_name).write_text(text, "utf-8")
    return run.out


__all__ = ["CARRIED", "FinishedRun", "excerpt_embeddings", "open_finished_run", "save_step"]
