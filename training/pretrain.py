"""Self-supervised pre-training: an encoder from the engine, an objective, a resumable loop.

The loop is deliberately plain PyTorch (no framework to pin, see DESIGN.md on CLMR's frozen
Lightning 1.x): one step = one batch from the objective's view dataset, waveform augmentation on
the device, the objective's loss, AdamW/Adam with warm-up + cosine decay.

Reproducibility is a feature here, because the design expects training to run in pieces
("many more steps, resumable across sessions"): everything random draws from seeded, recorded
streams. Crops come from the datasets' (seed, epoch, index) generators; epoch order from the
seeded `DistributedSampler`; augmentation from a dedicated device generator; the DataLoader gets
its own generator so creating an iterator mid-epoch does not consume the global stream; and the
global torch/numpy/Python states are saved with every checkpoint. A run stopped at step k and
resumed therefore computes the same steps k+1... as a run that never stopped (with
`loader_workers = 0`; worker processes seed their crops from per-iterator worker seeds, which a
resume mid-epoch hands out differently).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from musicssl.engine import paths
from musicssl.engine.bundle import BundleConfig, build_model, default_config
from musicssl.engine.device import configure_cpu_threads
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from . import distributed
from .audio_cache import AudioCache
from .checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    resolve_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    step_path,
)
from .config import (
    AugmentSection,
    ConfigError,
    DataConfig,
    ModelConfig,
    OptimConfig,
    PretrainConfig,
    RunConfig,
    dump_toml,
    to_dict,
)
from .datasets import TrackItem, from_folder, from_library, split
from .logs import TrainingLog

log = logging.getLogger(__name__)

# Settings a resumed run may change: they shape this session, not the computation.
SESSION_FIELDS = frozenset(
    {"resume", "stop_after", "max_minutes", "progress", "device", "threads", "steps"}
)
MAX_BAD_STEPS = 10  # consecutive non-finite losses before the run is abandoned


# ---------------------------------------------------------------------------------------------
# data


def load_items(data: DataConfig) -> list[TrackItem]:
    """The tracks a run trains on: a library DB (its tags and playlists) or an audio folder."""
    if data.library:
        return from_library(Path(data.library).expanduser(), sources=tuple(data.sources))
    if data.folder:
        return from_folder(Path(data.folder).expanduser(), tags_from_genre=data.tags_from_genre)
    raise ConfigError("no training data: give data.folder (--data) or data.library (--library)")


def split_items(data: DataConfig, items: Sequence[TrackItem]):
    """(train, val, test), grouped by `data.split_by` so an album never spans two parts."""
    return split(items, tuple(data.split), by=data.split_by, seed=data.seed)


def open_cache(data: DataConfig, sample_rate: int) -> AudioCache:
    folder = (
        Path(data.cache_dir).expanduser() if data.cache_dir else paths.data_dir() / "training-cache"
    )
    return AudioCache(folder, sample_rate)


def warm_cache(
    cache: AudioCache, items: Sequence[TrackItem], data: DataConfig, show: bool = True
) -> list[TrackItem]:
    """Decode every track once up front; tracks that fail are reported and left out."""
    paths_ = list(dict.fromkeys(item.path for item in items))
    bar = tqdm(total=len(paths_), desc="decoding", unit="track", disable=not show, leave=False)

    def progress(done: int, _total: int | None, _path: str) -> None:
        bar.update(done - bar.n)

    try:
        failures = cache.warm(paths_, progress=progress, workers=max(1, data.decode_workers))
    finally:
        bar.close()
    if failures:
        bad = {path for path, _ in failures}
        for path, reason in failures[:10]:
            log.warning("skipping undecodable track %s: %s", path, reason)
        if len(failures) > 10:
            log.warning("... and %d more undecodable tracks", len(failures) - 10)
        items = [item for item in items if item.path not in bad]
    return list(items)


def grouped_order(
    order: Sequence[int], groups: Sequence[object], per_group: int, seed: int
) -> list[int]:
    """`order` rearranged into runs of up to `per_group` indices sharing a group.

    Contiguous batches of such an order hold several tracks of each of a few albums. For a
    contrastive loss on crops of one track, those album mates are the hard negatives: with
    random batches the other tracks almost always come from other albums and differ in style,
    so the loss is satisfied by style features and never has to tell two tracks of one
    soundtrack apart (what first-half -> second-half identification asks). Indices keep their
    shuffled order inside a group; which group's run comes next is drawn from `seed`, and a
    group with fewer than `per_group` indices left contributes a shorter run.
    """
    if per_group < 2:
        return list(order)
    queues: dict[object, list[int]] = {}
    for index in order:
        queues.setdefault(groups[index], []).append(index)
    pending = list(queues.values())
    rng = np.random.default_rng(seed)
    out: list[int] = []
    while pending:
        # Larger queues go first more often, so no album is left to fill the epoch's end alone.
        sizes = np.array([len(q) for q in pending], dtype=np.float64)
        k = int(rng.choice(len(pending), p=sizes / sizes.sum()))
        out.extend(pending[k][:per_group])
        del pending[k][:per_group]
        if not pending[k]:
            pending.pop(k)
    return out


class StepBatches:
    """Batches for global steps: epoch = a pass over this rank's shard, reshuffled per epoch.

    `iterate(start_step)` begins exactly where step `start_step` of an uninterrupted run would,
    which is what makes resuming mid-epoch exact. With `groups` and `per_group` >= 2, each
    batch is made of runs of `per_group` items sharing a group (see `grouped_order`).
    """

    def __init__(
        self,
        dataset: Dataset,
        ctx: distributed.DistContext,
        batch_size: int,
        seed: int,
        workers: int = 0,
        min_batch: int = 2,
        groups: Sequence[object] | None = None,
        per_group: int = 0,
    ) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.workers = int(workers)
        if per_group >= 2 and (groups is None or len(groups) != len(dataset)):
            raise ValueError("per_group needs one group per dataset item")
        self.groups = groups
        self.per_group = int(per_group)
        self.pin_memory = ctx.device.type == "cuda"  # lets to_device copy asynchronously
        self.sampler = distributed.sampler(dataset, ctx, seed, shuffle=True, drop_last=True)
        per_rank = len(self.sampler)
        if per_rank < min_batch:
            raise ConfigError(
                f"only {len(dataset)} usable track(s) for {ctx.world_size} process(es): "
                f"a batch needs at least {min_batch}"
            )
        self.batch_size = min(int(batch_size), per_rank)
        if self.batch_size < batch_size:
            log.warning(
                "batch size %d is more than the %d tracks per process; using %d",
                batch_size,
                per_rank,
                self.batch_size,
            )
        self.batches_per_epoch = per_rank // self.batch_size

    def iterate(self, start_step: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yields (epoch, batch) forever, starting at `start_step`."""
        epoch, skip = divmod(start_step, self.batches_per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            set_epoch = getattr(self.dataset, "set_epoch", None)
            if set_epoch is not None:
                set_epoch(epoch)
            order = list(self.sampler)
            if self.groups is not None and self.per_group >= 2:
                order = grouped_order(
                    order, self.groups, self.per_group, self.seed * 1_000_003 + epoch
                )
            bs = self.batch_size
            batches = [order[i * bs : (i + 1) * bs] for i in range(skip, self.batches_per_epoch)]
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            loader = DataLoader(
                self.dataset,
                batch_sampler=batches,
                num_workers=self.workers,
                generator=generator,
                persistent_workers=False,
                pin_memory=self.pin_memory,
            )
            for batch in loader:
                yield epoch, batch
            epoch, skip = epoch + 1, 0


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    non_blocking = device.type == "cuda"
    return {
        k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


# ---------------------------------------------------------------------------------------------
# model and optimisation


def bundle_config_for(model: ModelConfig, tags: Sequence[str] = ()) -> BundleConfig:
    """The engine's description of the network to train (the bundle it will export as)."""
    return default_config(
        model.name,
        model.architecture,
        dict(model.arch_params),
        tags=list(tags),
        sample_rate=model.sample_rate,
        embedding_dim=model.embedding_dim,
        excerpt_samples=model.excerpt_samples,
    )


def make_objective(name: str, model: nn.Module, params: dict[str, Any]) -> nn.Module:
    """`build_objective` with its errors (unknown name or hyper-parameter) as ConfigError."""
    from .objectives import build_objective

    try:
        return build_objective(name, model, **params)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def make_optimizer(params: Sequence[nn.Parameter], optim: OptimConfig) -> torch.optim.Optimizer:
    if optim.optimizer == "adam":
        return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)
    if optim.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    raise ConfigError(f"optim.optimizer: unknown {optim.optimizer!r} (use adam or adamw)")


def lr_factor(optim: OptimConfig, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up, then constant or cosine decay to `min_lr_ratio` at `total_steps`."""
    if optim.schedule not in ("cosine", "constant"):
        raise ConfigError(f"optim.schedule: unknown {optim.schedule!r} (use cosine or constant)")
    warmup = max(0, int(optim.warmup_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if optim.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (
            1 + math.cos(math.pi * progress)
        )

    return factor


def unique_parameters(*groups: Sequence[nn.Parameter]) -> list[nn.Parameter]:
    """Trainable parameters of several modules, each once (objectives share the encoder)."""
    seen: set[int] = set()
    out = []
    for group in groups:
        for p in group:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def make_augment(
    section: AugmentSection, sample_rate: int, device: torch.device
) -> nn.Module | None:
    if not section.enabled:
        return None
    from .augment import Augment, AugmentConfig

    params = {k: tuple(v) if isinstance(v, list) else v for k, v in section.params.items()}
    try:
        aug_config = AugmentConfig(**params)
    except TypeError as exc:
        raise ConfigError(f"augment.params: {exc}") from None
    return Augment(sample_rate, aug_config).to(device)


def augment_views(
    batch: dict[str, Any], augment: nn.Module | None, generator: torch.Generator | None
) -> dict[str, Any]:
    if augment is None:
        return batch
    batch = dict(batch)
    for key in ("x1", "x2"):
        if key in batch:
            batch[key] = augment(batch[key], generator=generator)
    return batch


def clip_gradients(params: Sequence[nn.Parameter], max_norm: float) -> float | None:
    if max_norm and max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return None


# ---------------------------------------------------------------------------------------------
# run bookkeeping shared by pre-training and fine-tuning


def check_resume_config(saved: dict[str, Any], current: RunConfig, source: Path) -> None:
    """A resumed run must compute what the original would have: only session fields may differ."""
    now = to_dict(current)
    differ = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        elif a != b and prefix.split(".")[0] not in SESSION_FIELDS and prefix != "out":
            differ.append(f"{prefix} (checkpoint: {a!r}, now: {b!r})")

    walk(saved, now, "")
    if differ:
        raise ConfigError(
            f"cannot resume from {source}: settings differ from the checkpoint's: "
            + "; ".join(differ)
            + " (resume with the run's config.toml, or start a new --out)"
        )


def resume_path(config: RunConfig, out: Path) -> Path | None:
    if not config.resume:
        return None
    if config.resume in ("latest", "auto"):
        found = latest_checkpoint(out)
        if found is None and config.resume == "latest":
            raise CheckpointError(f"{out}: nothing to resume (no checkpoints yet)")
        return found
    return resolve_checkpoint(config.resume, prefer_best=False)


class SessionLimit:
    """Ends a session after `stop_after` steps or `max_minutes`, the same step on every rank."""

    def __init__(self, config: RunConfig, start_step: int, ctx: distributed.DistContext):
        self.stop_at = start_step + config.stop_after if config.stop_after else None
        self.deadline = time.monotonic() + 60 * config.max_minutes if config.max_minutes else None
        self.ctx = ctx

    def reached(self, step: int) -> bool:
        if self.stop_at is not None and step >= self.stop_at:
            return True
        if self.deadline is None:
            return False
        return distributed.broadcast_flag(time.monotonic() >= self.deadline, self.ctx)


def start_fresh(out: Path, log: TrainingLog) -> None:
    """A new run must not mix with an old one's checkpoints (resume would pick those up)."""
    if latest_checkpoint(out) is not None:
        raise ConfigError(
            f"{out} already holds checkpoints of a run: continue it with --resume, or choose "
            "another --out"
        )
    log.rows = []


def write_run_config(out: Path, config: Any) -> None:
    """Record the run's settings (what `--resume` reloads), minus this session's limits."""
    out.mkdir(parents=True, exist_ok=True)
    recorded = dataclasses.replace(config, resume=None, stop_after=None, max_minutes=None)
    (out / "config.toml").write_text(dump_toml(recorded), encoding="utf-8")


def gather_rng(
    ctx: distributed.DistContext, generators: dict[str, torch.Generator]
) -> list[dict[str, Any]]:
    """Every rank's RNG state (rank order), so a resumed multi-process run is exact too."""
    mine = rng_state(generators)
    if not ctx.enabled:
        return [mine]
    gathered: list[Any] = [None] * ctx.world_size
    torch.distributed.all_gather_object(gathered, mine)
    return gathered


def restore_rng(
    states: list[dict[str, Any]],
    ctx: distributed.DistContext,
    generators: dict[str, torch.Generator],
) -> None:
    if len(states) != ctx.world_size:
        warnings.warn(
            f"checkpoint was written by {len(states)} process(es), now {ctx.world_size}: "
            "random streams restart, so this resume is not bit-exact",
            stacklevel=2,
        )
        set_rng_state(states[0], generators)
        return
    set_rng_state(states[ctx.rank], generators)


def window_means(window: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for row in window for k in row})
    out = {}
    for key in keys:
        values = [row[key] for row in window if key in row and math.isfinite(row[key])]
        if values:
            out[key] = float(np.mean(values))
    return out


class CollapseWarnings:
    """Turns logged collapse flags into a clear warning, without flooding a long run's output.

    Warns when collapse is first seen and then at most every `every` steps while it persists.
    """

    def __init__(self, every: int = 500) -> None:
        self.every = every
        self.last: int | None = None

    def maybe_warn(self, step: int, means: dict[str, float]) -> bool:
        flags = {k: v for k, v in means.items() if k.split("/")[-1] == "collapsed" and v >= 0.5}
        if not flags:
            return False
        if self.last is not None and step - self.last < self.every:
            return False
        self.last = step
        shown = {
            k: v
            for k, v in means.items()
            if k.split("/")[-1] in ("embedding_std_ratio", "mean_cosine", "cluster_entropy")
        }
        message = (
            f"step {step}: the embeddings look collapsed ("
            + ", ".join(f"{k}={v:.3g}" for k, v in {**flags, **shown}.items())
            + "): different tracks map to (nearly) the same point, so similarity search would "
            "return noise. Try a lower learning rate, a larger batch or another objective "
            "(thresholds: training/collapse.py)."
        )
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        return True


# ---------------------------------------------------------------------------------------------
# pre-training


class Pretrainer:
    """One pre-training run; `run()` trains to `steps` (or the session limit) and returns `out`.

    Split in `setup` and `train` so tests and tools can inspect the objects in between.
    """

    def __init__(self, config: PretrainConfig) -> None:
        self.config = config
        self.out = Path(config.out).expanduser()
        self.ctx: distributed.DistContext | None = None
        self.step = 0
        self._saved_step = -1
        self._collapse_warnings = CollapseWarnings()

    # -- setup --------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.config
        self.ctx = ctx = distributed.init(cfg.device)
        if cfg.threads:
            configure_cpu_threads(cfg.threads)
        self.device = ctx.device
        seed_everything(cfg.seed)

        self.bundle_config = bundle_config_for(cfg.model)
        self.model = build_model(self.bundle_config)
        self.objective = make_objective(cfg.objective, self.model, cfg.objective_params)
        self.crop_samples = self.bundle_config.excerpt_samples

        items = load_items(cfg.data)
        train, _val, _test = split_items(cfg.data, items)
        self.cache = open_cache(cfg.data, self.bundle_config.sample_rate)
        show = cfg.progress and ctx.is_main
        # Rank 0 decodes first so ranks do not race on the same cache entries.
        if ctx.is_main:
            train = warm_cache(self.cache, train, cfg.data, show)
        distributed.barrier(ctx)
        if not ctx.is_main:
            train = warm_cache(self.cache, train, cfg.data, False)
        if not train:
            raise ConfigError("no decodable training tracks")
        self.items = train
        self.dataset = self._dataset(train)
        self.batches = StepBatches(
            self.dataset, ctx, cfg.batch_size, cfg.data.seed + cfg.seed, cfg.data.loader_workers
        )

        # SyncBatchNorm conversion swaps BN children in place, so self.model stays the model.
        objective = distributed.prepare_module(self.objective, ctx).to(self.device)
        self.objective = objective
        self.trainable = unique_parameters(objective.online_parameters())
        self.optimizer = make_optimizer(self.trainable, cfg.optim)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(cfg.optim, cfg.steps)
        )
        self.runner = distributed.wrap(objective, ctx)
        self.augment = make_augment(cfg.augment, self.bundle_config.sample_rate, self.device)
        self.generators = {"augment": torch.Generator(device=self.device)}
        self.generators["augment"].manual_seed(cfg.seed * 7919 + 17 + ctx.rank)
        self.log = TrainingLog(self.out, enabled=ctx.is_main)
        self._resume()

    def _dataset(self, items: list[TrackItem]) -> Dataset:
        from .sampler import PairDataset, TwoViewDataset

        seed = self.config.data.seed + self.config.seed
        views = getattr(self.objective, "views", "two_view")
        if views == "pairs":
            return PairDataset(
                items, self.cache, self.crop_samples, seed=seed, mode=self.config.pair_mode
            )
        if views != "two_view":
            raise ConfigError(f"objective {self.config.objective!r} wants unknown views {views!r}")
        return TwoViewDataset(items, self.cache, self.crop_samples, seed=seed)

    def _resume(self) -> None:
        path = resume_path(self.config, self.out)
        if path is None:
            start_fresh(self.out, self.log)
            if self.ctx.is_main:
                write_run_config(self.out, self.config)
            return
        state = load_checkpoint(path)
        if state.get("kind") != "pretrain":
            raise CheckpointError(f"{path}: not a pre-training checkpoint")
        check_resume_config(state["config"], self.config, path)
        distributed.unwrap(self.runner).load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = self._saved_step = int(state["step"])
        restore_rng(state["rng"], self.ctx, self.generators)
        self.log.truncate(self.step)
        if self.ctx.is_main:
            log.info("resumed %s at step %d", path, self.step)

    # -- checkpoints ----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "kind": "pretrain",
            "step": self.step,
            "config": to_dict(self.config),
            "bundle_config": self.bundle_config.to_dict(),
            "model": self.model.state_dict(),
            "objective": distributed.unwrap(self.runner).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "world_size": self.ctx.world_size,
        }

    def save(self, collective: bool = True, final: bool = False) -> Path | None:
        """Checkpoint the current step (rank 0 writes; with `collective` all ranks must call)."""
        # An interrupted rank cannot wait for the others: it records its own streams only.
        rng = gather_rng(self.ctx, self.generators) if collective else [rng_state(self.generators)]
        self._saved_step = self.step
        if not self.ctx.is_main:
            return None
        path = save_checkpoint(step_path(self.out, self.step), {**self.state(), "rng": rng})
        prune_checkpoints(self.out, self.config.keep_checkpoints)
        self.log.flush(plot=True, force_plot=final)
        return path

    # -- training -------------------------------------------------------------------------------
    def _collapse(self, batch: dict[str, Any]) -> dict[str, float]:
        """Collapse statistics of served embeddings z, the model in eval mode.

        The objectives report the same statistics on their training batches; this check adds
        a view with running BatchNorm statistics, i.e. what analysis would produce.
        """
        from musicssl.engine.embedding_model import normalize

        from .collapse import collapse_metrics, is_collapsed

        x = batch.get("x1", batch.get("x"))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                z = normalize(self.model.encode(x)).float()
                assign = getattr(distributed.unwrap(self.runner), "assignments", None)
                assignments = assign(z) if callable(assign) else None
        finally:
            self.model.train(was_training)
        values = collapse_metrics(z, assignments)
        values["collapsed"] = float(is_collapsed(values))
        return {f"collapse/{k}": float(v) for k, v in values.items()}

    def train(self) -> Path:
        cfg, ctx = self.config, self.ctx
        total = cfg.steps
        limit = SessionLimit(cfg, self.step, ctx)
        bar = tqdm(
            total=total,
            initial=self.step,
            desc=f"pretrain {cfg.objective}",
            unit="step",
            disable=not (cfg.progress and ctx.is_main),
        )
        self.runner.train()
        window: list[dict[str, float]] = []
        bad_steps = 0
        started = time.monotonic()
        examples = 0
        waited = 0.0  # time blocked on the data loader: the stall share in the log
        batches = self.batches.iterate(self.step)
        with distributed.global_negatives(ctx):
            try:
                while self.step < total and not limit.reached(self.step):
                    before = time.monotonic()
                    epoch, batch = next(batches)
                    waited += time.monotonic() - before
                    batch = to_device(batch, self.device)
                    batch = augment_views(batch, self.augment, self.generators["augment"])
                    loss, metrics = self.runner(batch, self.step, total)
                    self.optimizer.zero_grad(set_to_none=True)
                    if not torch.isfinite(loss):
                        bad_steps += 1
                        log.warning("step %d: non-finite loss %s, step skipped", self.step, loss)
                        if bad_steps >= MAX_BAD_STEPS:
                            raise FloatingPointError(
                                f"{bad_steps} consecutive non-finite losses at step {self.step};"
                                " lower optim.lr or check the data"
                            )
                    else:
                        bad_steps = 0
                        loss.backward()
                        clip_gradients(self.trainable, cfg.optim.grad_clip)
                        self.optimizer.step()
                    lr = self.optimizer.param_groups[0]["lr"]
                    self.scheduler.step()
                    distributed.unwrap(self.runner).after_step(self.step, total)
                    self.step += 1
                    examples += next(v for v in batch.values() if torch.is_tensor(v)).shape[0]
                    row = {"loss": float(loss.detach())}
                    row.update({k: float(v) for k, v in (metrics or {}).items()})
                    window.append(row)
                    bar.update(1)
                    if cfg.collapse_every and self.step % cfg.collapse_every == 0:
                        window[-1].update(self._collapse(batch))
                    if self.step % max(1, cfg.log_every) == 0 or self.step == total:
                        self._log_window(window, epoch, lr, started, examples, waited, bar)
                        window, examples, waited, started = [], 0, 0.0, time.monotonic()
                    if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        self.save()
            except KeyboardInterrupt:
                if ctx.is_main:
                    tqdm.write(f"interrupted: saving step {self.step} (resume with --resume)")
                    self.save(collective=not ctx.enabled, final=True)
                bar.close()
                raise
        bar.close()
        if window:
            self._log_window(window, epoch, lr, started, examples, waited, bar)
        self._save_final()
        return self.out

    def _save_final(self) -> None:
        if self._saved_step != self.step:
            self.save(final=True)
        elif self.ctx.is_main:
            self.log.flush(force_plot=True)

    def _log_window(self, window, epoch, lr, started, examples, waited, bar) -> None:
        means = distributed.all_reduce_mean(window_means(window), self.ctx)
        elapsed = max(1e-9, time.monotonic() - started)
        row = {"step": self.step, "epoch": epoch, "lr": lr, **means}
        row["examples_per_s"] = examples * self.ctx.world_size / elapsed
        row["data_wait_share"] = waited / elapsed
        self.log.log(row)
        self.log.flush(plot=False)
        if self.ctx.is_main:
            self._collapse_warnings.maybe_warn(self.step, means)
        bar.set_postfix(loss=f"{means.get('loss', float('nan')):.4f}", lr=f"{lr:.2e}")

    def run(self) -> Path:
        try:
            if self.ctx is None:
                self.setup()
            return self.train()
        finally:
            if self.ctx is not None:
                distributed.shutdown(self.ctx)


def pretrain(config: PretrainConfig) -> Path:
    """Train (or resume) a pre-training run; returns the run folder holding `checkpoints/`."""
    return Pretrainer(config).run()


__all__ = [
    "Pretrainer",
    "StepBatches",
    "augment_views",
    "bundle_config_for",
    "load_items",
    "lr_factor",
    "make_optimizer",
    "open_cache",
    "pretrain",
    "split_items",
    "warm_cache",
]
