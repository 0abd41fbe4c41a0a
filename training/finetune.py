"""Fine-tuning: metric learning with a self-supervised auxiliary loss (PLOS ONE 2023).

Akama et al. ("Auxiliary self-supervision to metric learning for music similarity-based
retrieval and auto-tagging") found that, after contrastive pre-training, training *on* the tags
with the encoder unfrozen while the SSL loss keeps running beats a frozen-encoder probe, and by
more the fewer tracks are labelled. The recipe:

- z = L2(LayerNorm_noaffine(h)); the tag head is bias-free linear on z plus a sigmoid (exactly
  the engine's `EmbeddingModel`, so the result is served with no engine change);
- L_ML = BCE over *known* labels only (the mask), on labelled tracks;
- L_SSL = the pre-training objective (NT-Xent over two crops by default) on *all* training
  tracks, labelled or not, so unlabelled audio keeps shaping the space;
- L = L_ML + lambda * L_SSL with lambda = alpha / r, where r is the ratio of the two losses at
  convergence when each is trained alone (`measure_ratio`). Dividing by r puts both terms on one
  scale, so alpha means the same thing for any pair of losses;
- no augmentation (crops only) — the paper found fine-tuning without it better; `augment.enabled`
  switches it on for comparison;
- early stopping on validation macro ROC-AUC, learning rate reduced on plateau.

Each step draws one batch of labelled crops (for L_ML) and one two-view batch over all tracks
(for L_SSL). With 1 % labels a mixed batch would rarely hold a labelled track, so the two streams
are kept apart and both terms are present at every step.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from musicssl.engine.bundle import build_model
from musicssl.engine.device import configure_cpu_threads
from musicssl.engine.embedding_model import EmbeddingModel, normalize
from torch import nn
from tqdm import tqdm

from . import distributed, metrics
from .checkpoint import (
    BEST_NAME,
    CheckpointError,
    load_checkpoint,
    load_model,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    seed_everything,
    step_path,
    transfer_weights,
)
from .config import ConfigError, FinetuneConfig, to_dict
from .datasets import TrackItem, subsample_labels, vocabulary
from .evaluate import embed_tracks, known_labels, widen_mask
from .logs import TrainingLog
from .pretrain import (
    CollapseWarnings,
    SessionLimit,
    StepBatches,
    augment_views,
    bundle_config_for,
    check_resume_config,
    clip_gradients,
    gather_rng,
    load_items,
    make_augment,
    make_objective,
    make_optimizer,
    open_cache,
    restore_rng,
    resume_path,
    split_items,
    start_fresh,
    to_device,
    unique_parameters,
    warm_cache,
    window_means,
    write_run_config,
)

log = logging.getLogger(__name__)

RATIO_NAME = "ratio.json"
MODES = ("joint", "ml", "ssl")


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean BCE over known entries only; 0 (with a graph) when nothing in the batch is known."""
    weight = mask.to(logits.dtype)
    total = F.binary_cross_entropy_with_logits(logits, targets, weight=weight, reduction="sum")
    return total / weight.sum().clamp(min=1.0)


class JointLoss(nn.Module):
    """L_ML + lambda * L_SSL in one forward, so DistributedDataParallel sees a single graph."""

    def __init__(self, model: EmbeddingModel, objective: nn.Module | None, negatives: str):
        super().__init__()
        self.model = model
        self.objective = objective
        self.negatives = negatives

    def forward(
        self,
        ml_batch: dict[str, Any] | None,
        ssl_batch: dict[str, Any] | None,
        step: int,
        total_steps: int,
        lam: float,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        parts: dict[str, float] = {}
        loss = None
        if ml_batch is not None:
            h = self.model.encode(ml_batch["x"])
            logits = self.model.tag_head(normalize(h))
            mask = widen_mask(ml_batch["targets"], ml_batch["mask"].bool(), self.negatives)
            l_ml = masked_bce(logits, ml_batch["targets"], mask)
            parts["loss_ml"] = float(l_ml.detach())
            loss = l_ml
        if ssl_batch is not None and self.objective is not None:
            l_ssl, ssl_metrics = self.objective(ssl_batch, step, total_steps)
            parts["loss_ssl"] = float(l_ssl.detach())
            parts.update({f"ssl/{k}": float(v) for k, v in (ssl_metrics or {}).items()})
            loss = l_ssl * lam if loss is None else loss + lam * l_ssl
        if loss is None:
            raise RuntimeError("a fine-tuning step needs a labelled or an SSL batch")
        return loss, parts


def read_ratio(path: str | Path) -> float:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    ratio = float(data["ratio"])
    if not math.isfinite(ratio) or ratio <= 0:
        raise ConfigError(f"{path}: ratio must be a positive number, got {ratio}")
    return ratio


def resolve_ratio(config: FinetuneConfig) -> tuple[float, str]:
    """r from `--ratio`, else the ratio file (default <out>/ratio.json), else 1 with a warning."""
    if config.ratio is not None:
        if not math.isfinite(config.ratio) or config.ratio <= 0:
            raise ConfigError(f"ratio must be a positive number, got {config.ratio}")
        return float(config.ratio), "--ratio"
    path = Path(config.ratio_file or Path(config.out) / RATIO_NAME).expanduser()
    if path.is_file():
        return read_ratio(path), str(path)
    if config.ratio_file:
        raise ConfigError(f"{path}: no such ratio file (run measure-ratio first)")
    warnings.warn(
        "no loss ratio measured (run `musicssl-train measure-ratio` or pass --ratio): using "
        "r = 1, so lambda = alpha and the SSL term may be on another scale than the tag loss",
        RuntimeWarning,
        stacklevel=2,
    )
    return 1.0, "default"


def has_known_label(item: TrackItem, vocab_keys: set[str]) -> bool:
    return any(tag.casefold() in vocab_keys for tag in item.labels)


class Finetuner:
    """One fine-tuning run. `mode` "ml" / "ssl" trains one loss alone (for `measure_ratio`)."""

    def __init__(
        self,
        config: FinetuneConfig,
        mode: str = "joint",
        checkpoints: bool = True,
        ctx: distributed.DistContext | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.config = config
        self.mode = mode
        self.checkpoints = checkpoints
        self.out = Path(config.out).expanduser()
        self.ctx = ctx
        self._owns_ctx = ctx is None
        self.step = 0
        self._saved_step = -1
        self._best_state: dict[str, torch.Tensor] | None = None
        self.best_score = -math.inf
        self.best_metrics: dict[str, float] = {}
        self.bad_evals = 0
        self.stopped_early = False
        self.history: dict[str, list[float]] = {"loss_ml": [], "loss_ssl": []}
        self._collapse_warnings = CollapseWarnings()

    # -- setup --------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.config
        if self.ctx is None:
            self.ctx = distributed.init(cfg.device)
        ctx = self.ctx
        if cfg.threads:
            configure_cpu_threads(cfg.threads)
        self.device = ctx.device
        seed_everything(cfg.seed)
        data = cfg.data

        items = load_items(data)
        train, val, _test = split_items(data, items)
        if data.label_fraction < 1.0:
            train = subsample_labels(train, data.label_fraction, seed=data.seed)
        self.vocab = vocabulary(train, data.min_tag_count)
        if self.mode != "ssl" and not self.vocab:
            raise ConfigError(
                "no tags to learn: the training split has no track with a tag "
                f"(min_tag_count={data.min_tag_count}); tag some tracks or use --data with genres"
            )

        self._build_model()
        self.cache = open_cache(data, self.bundle_config.sample_rate)
        show = cfg.progress and ctx.is_main
        if ctx.is_main:
            train = warm_cache(self.cache, train, data, show)
            val = warm_cache(self.cache, val, data, False)
        distributed.barrier(ctx)
        if not ctx.is_main:
            train = warm_cache(self.cache, train, data, False)
            val = warm_cache(self.cache, val, data, False)
        keys = {t.casefold() for t in self.vocab}
        self.labelled = [it for it in train if has_known_label(it, keys)]
        self.train_items = train
        self.val_items = [it for it in val if has_known_label(it, keys)]
        self.val_targets = known_labels(self.val_items, self.vocab, data.negatives)

        from .sampler import CropDataset, TwoViewDataset

        crop = self.bundle_config.excerpt_samples
        seed = data.seed + cfg.seed
        self.objective = None
        if self.mode != "ml":
            self.objective = make_objective(cfg.ssl_objective, self.model, cfg.ssl_params)
            if getattr(self.objective, "views", "two_view") != "two_view":
                raise ConfigError(
                    f"ssl_objective {cfg.ssl_objective!r} trains on playlist pairs; the "
                    "auxiliary loss needs a two-crop objective (contrastive, byol, ...)"
                )
        self.ml_batches = self.ssl_batches = None
        if self.mode != "ssl":
            ml_set = CropDataset(self.labelled, self.cache, crop, vocab=self.vocab, seed=seed)
            if not self.labelled:
                raise ConfigError("no labelled training track has a tag of the vocabulary")
            # BCE is defined on a single track; a 1 % label run may have only a handful.
            self.ml_batches = StepBatches(
                ml_set, ctx, cfg.batch_size, seed, data.loader_workers, min_batch=1
            )
        if self.mode != "ml":
            ssl_set = TwoViewDataset(train, self.cache, crop, seed=seed + 1)
            self.ssl_batches = StepBatches(
                ssl_set,
                ctx,
                cfg.batch_size,
                seed + 1,
                data.loader_workers,
                groups=[it.album for it in train],
                per_group=cfg.ssl_album_run,
            )

        joint = JointLoss(self.model, self.objective, data.negatives)
        self.joint = distributed.prepare_module(joint, ctx).to(self.device)
        groups = [self.model.parameters()]
        if self.objective is not None:
            groups.append(self.objective.online_parameters())
        self.trainable = unique_parameters(*groups)
        self.optimizer = make_optimizer(self.trainable, cfg.optim)
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            mode="max",
            factor=cfg.plateau_factor,
            patience=cfg.plateau_patience,
            min_lr=cfg.min_lr,
        )
        self.runner = distributed.wrap(self.joint, ctx)
        self.augment = make_augment(cfg.augment, self.bundle_config.sample_rate, self.device)
        self.generators = {"augment": torch.Generator(device=self.device)}
        self.generators["augment"].manual_seed(cfg.seed * 7919 + 29 + ctx.rank)
        if self.mode == "joint":
            self.ratio, self.ratio_source = resolve_ratio(cfg)
            self.lam = cfg.alpha / self.ratio
        else:
            self.ratio, self.ratio_source, self.lam = 1.0, "n/a", 1.0
        self.log = TrainingLog(self.out, enabled=ctx.is_main)
        self._resume()

    def _build_model(self) -> None:
        cfg = self.config
        if cfg.init:
            source, source_config, _ = load_model(cfg.init)
            self.bundle_config = dataclasses.replace(
                source_config,
                name=cfg.model.name,
                tags=list(self.vocab),
                thresholds=[0.5] * len(self.vocab),
                # The encoders are fully convolutional, so fine-tuning may hear longer crops
                # than pre-training did; analysis then uses the same length.
                excerpt_samples=cfg.model.excerpt_samples or source_config.excerpt_samples,
                trained=False,
                provenance={},
                # Fitted to the init's encoder and data; refit after (training/whitening.py).
                whitened=False,
                harmony_weight=0.0,
                rhythm_weight=0.0,
            )
            self.model = build_model(self.bundle_config)
            shared = transfer_weights(source, self.model)
            if shared:
                log.info("kept the tag head rows of %d tag(s) from %s", len(shared), cfg.init)
        else:
            self.bundle_config = bundle_config_for(cfg.model, self.vocab)
            self.model = build_model(self.bundle_config)

    def _resume(self) -> None:
        path = resume_path(self.config, self.out) if self.checkpoints else None
        if path is None:
            if self.checkpoints:
                start_fresh(self.out, self.log)
                if self.ctx.is_main:
                    write_run_config(self.out, self.config)
            else:
                self.log.rows = []
            return
        state = load_checkpoint(path)
        if state.get("kind") != "finetune":
            raise CheckpointError(f"{path}: not a fine-tuning checkpoint")
        check_resume_config(state["config"], self.config, path)
        if state["bundle_config"]["tags"] != self.vocab:
            raise CheckpointError(f"{path}: its tag vocabulary differs from the data's now")
        distributed.unwrap(self.runner).load_state_dict(state["joint"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.plateau.load_state_dict(state["plateau"])
        self.step = self._saved_step = int(state["step"])
        extra = state["progress"]
        self.best_score = float(extra["best_score"])
        self.best_metrics = dict(extra["best_metrics"])
        self.bad_evals = int(extra["bad_evals"])
        self.stopped_early = bool(extra["stopped_early"])
        restore_rng(state["rng"], self.ctx, self.generators)
        self.log.truncate(self.step)
        best = self.out / BEST_NAME
        if best.is_file():
            self._best_state = load_checkpoint(best)["model"]

    # -- checkpoints ----------------------------------------------------------------------------
    def _state(self, model_state: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {
            "kind": "finetune",
            "step": self.step,
            "config": to_dict(self.config),
            "bundle_config": self.bundle_config.to_dict(),
            "model": model_state,
            "metrics": dict(self.best_metrics),
            "ratio": self.ratio,
            "lambda": self.lam,
            "world_size": self.ctx.world_size,
        }

    def save(self, collective: bool = True, final: bool = False) -> None:
        if not self.checkpoints:
            if self.ctx.is_main:
                self.log.flush(plot=True, force_plot=final)
            return
        rng = gather_rng(self.ctx, self.generators) if collective else [rng_state(self.generators)]
        self._saved_step = self.step
        if not self.ctx.is_main:
            return
        state = self._state(self.model.state_dict())
        state.update(
            {
                "joint": distributed.unwrap(self.runner).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "plateau": self.plateau.state_dict(),
                "rng": rng,
                "progress": {
                    "best_score": self.best_score,
                    "best_metrics": dict(self.best_metrics),
                    "bad_evals": self.bad_evals,
                    "stopped_early": self.stopped_early,
                },
            }
        )
        save_checkpoint(step_path(self.out, self.step), state)
        prune_checkpoints(self.out, self.config.keep_checkpoints)
        self.log.flush(plot=True, force_plot=final)

    # -- validation -----------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        """Track-level validation: mean excerpt probabilities, as the engine computes tags."""
        if not self.val_items:
            return {}
        outputs = embed_tracks(
            self.model,
            self.val_items,
            self.cache,
            self.bundle_config.excerpt_samples,
            self.device,
            self.config.val_excerpts,
            self.config.batch_size,
        )
        targets, mask = self.val_targets
        scores = metrics.tagging_metrics(outputs.probs, targets, mask)
        probs = np.clip(outputs.probs.astype(np.float64), 1e-7, 1 - 1e-7)
        bce = -(targets * np.log(probs) + (1 - targets) * np.log(1 - probs))
        val_bce = float((bce * mask).sum() / max(1, mask.sum()))
        values = {
            "val_roc_auc": scores["roc_auc"],
            "val_pr_auc": scores["pr_auc"],
            "val_bce": val_bce,
        }
        # Ranks hold slightly different BatchNorm statistics between steps; averaging the scores
        # keeps every rank's plateau/early-stopping decision the same.
        return distributed.all_reduce_mean(values, self.ctx)

    def _after_validation(self, values: dict[str, float]) -> None:
        score = values.get("val_roc_auc", math.nan)
        if not math.isfinite(score):
            score = -values.get("val_bce", math.nan)  # no evaluable tag: fall back to the loss
        if not math.isfinite(score):
            return
        self.plateau.step(score)
        if score > self.best_score + 1e-6:
            self.best_score = score
            self.best_metrics = {k: float(v) for k, v in values.items()}
            self.bad_evals = 0
            self._best_state = copy.deepcopy(
                {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
            )
            if self.ctx.is_main and self.checkpoints:
                save_checkpoint(self.out / BEST_NAME, self._state(self._best_state))
        else:
            self.bad_evals += 1
            if self.config.patience and self.bad_evals >= self.config.patience:
                self.stopped_early = True

    # -- training -------------------------------------------------------------------------------
    def train(self) -> Path:
        cfg, ctx = self.config, self.ctx
        total = cfg.steps
        limit = SessionLimit(cfg, self.step, ctx)
        bar = tqdm(
            total=total,
            initial=self.step,
            desc=f"finetune ({self.mode})",
            unit="step",
            disable=not (cfg.progress and ctx.is_main),
        )
        ml_iter = self.ml_batches.iterate(self.step) if self.ml_batches else None
        ssl_iter = self.ssl_batches.iterate(self.step) if self.ssl_batches else None
        self.runner.train()
        window: list[dict[str, float]] = []
        epoch, lr = 0, self.optimizer.param_groups[0]["lr"]
        with distributed.global_negatives(ctx):
            try:
                while self.step < total and not self.stopped_early and not limit.reached(self.step):
                    ml_batch = ssl_batch = None
                    if ml_iter is not None:
                        epoch, ml_batch = next(ml_iter)
                        ml_batch = to_device(ml_batch, self.device)
                        if self.augment is not None:
                            ml_batch["x"] = self.augment(
                                ml_batch["x"], generator=self.generators["augment"]
                            )
                    if ssl_iter is not None:
                        ssl_epoch, ssl_batch = next(ssl_iter)
                        epoch = epoch if ml_iter is not None else ssl_epoch
                        ssl_batch = to_device(ssl_batch, self.device)
                        ssl_batch = augment_views(
                            ssl_batch, self.augment, self.generators["augment"]
                        )
                    loss, parts = self.runner(ml_batch, ssl_batch, self.step, total, self.lam)
                    self.optimizer.zero_grad(set_to_none=True)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"non-finite fine-tuning loss at step {self.step}; lower optim.lr"
                        )
                    loss.backward()
                    clip_gradients(self.trainable, cfg.optim.grad_clip)
                    self.optimizer.step()
                    if self.objective is not None:
                        self.objective.after_step(self.step, total)
                    lr = self.optimizer.param_groups[0]["lr"]
                    self.step += 1
                    for key in self.history:
                        if key in parts:
                            self.history[key].append(parts[key])
                    window.append({"loss": float(loss.detach()), **parts})
                    bar.update(1)
                    row_extra: dict[str, float] = {}
                    if cfg.eval_every and self.step % cfg.eval_every == 0 and self.mode != "ssl":
                        row_extra = self.validate()
                        self._after_validation(row_extra)
                        self.runner.train()
                    if row_extra or self.step % max(1, cfg.log_every) == 0 or self.step == total:
                        self._log_window(window, epoch, lr, row_extra, bar)
                        window = []
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
            self._log_window(window, epoch, lr, {}, bar)
        if self.stopped_early and ctx.is_main:
            tqdm.write(
                f"early stop at step {self.step}: no better validation score in "
                f"{cfg.patience} evaluations (best {self.best_score:.4f})"
            )
        finished = self.step >= total or self.stopped_early
        if self._saved_step != self.step:
            self.save(final=True)
        elif ctx.is_main:
            self.log.flush(force_plot=True)
        if finished and self._best_state is not None:
            # Leave the selected weights in the model for callers that use it directly.
            self.model.load_state_dict(self._best_state)
        return self.out

    def _log_window(self, window, epoch, lr, extra, bar) -> None:
        means = distributed.all_reduce_mean(window_means(window), self.ctx)
        row = {"step": self.step, "epoch": epoch, "lr": lr, "lambda": self.lam, **means, **extra}
        self.log.log(row)
        self.log.flush(plot=False)
        if self.ctx.is_main:
            self._collapse_warnings.maybe_warn(self.step, means)
        bar.set_postfix(loss=f"{means.get('loss', math.nan):.4f}", lr=f"{lr:.2e}")

    def run(self) -> Path:
        try:
            self.setup()
            return self.train()
        finally:
            if self._owns_ctx and self.ctx is not None:
                distributed.shutdown(self.ctx)


def finetune(config: FinetuneConfig) -> Path:
    """Fine-tune (or resume); returns the run folder (best weights in best.pt)."""
    return Finetuner(config).run()


def _converged(values: list[float]) -> float:
    """Mean of the last fifth of a loss curve: what the loss settled at, minus step noise."""
    if not values:
        return math.nan
    tail = values[-max(1, len(values) // 5) :]
    return float(np.mean(tail))


def measure_ratio(config: FinetuneConfig, steps: int | None = None) -> dict[str, Any]:
    """r = converged L_ML / converged L_SSL, each from a short run of that loss alone.

    Both runs start from the same initialisation (`init`, or the seeded random network) with the
    same data, so r compares the two losses and nothing else. Writes <out>/ratio.json, which
    `finetune` reads by default; the runs' logs and curves go to <out>/ratio/{ml,ssl} so the
    user can check that both curves have flattened (if not, raise `ratio_steps`).
    """
    steps = int(steps or config.ratio_steps)
    out = Path(config.out).expanduser()
    converged = {}
    ctx = distributed.init(config.device)
    try:
        for mode, key in (("ml", "loss_ml"), ("ssl", "loss_ssl")):
            sub = dataclasses.replace(
                config,
                out=str(out / "ratio" / mode),
                steps=steps,
                eval_every=0,
                checkpoint_every=0,
                resume=None,
                stop_after=None,
                max_minutes=None,
            )
            run = Finetuner(sub, mode=mode, checkpoints=False, ctx=ctx)
            started = time.monotonic()
            run.run()
            local = _converged(run.history[key])
            converged[mode] = distributed.all_reduce_mean({"v": local}, ctx)["v"]
            log.info(
                "%s alone: converged loss %.4f (%.0f s)",
                mode,
                converged[mode],
                time.monotonic() - started,
            )
        if not converged["ssl"] > 0:
            raise FloatingPointError(
                f"SSL loss converged to {converged['ssl']}; cannot form a ratio"
            )
        result = {
            "ratio": converged["ml"] / converged["ssl"],
            "ml_loss": converged["ml"],
            "ssl_loss": converged["ssl"],
            "steps": steps,
            "ssl_objective": config.ssl_objective,
            "init": config.init,
            "world_size": ctx.world_size,
        }
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / RATIO_NAME).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    finally:
        distributed.shutdown(ctx)
    return result


__all__ = [
    "JointLoss",
    "RATIO_NAME",
    "Finetuner",
    "finetune",
    "masked_bce",
    "measure_ratio",
    "read_ratio",
    "resolve_ratio",
]
