"""Scale-out: the same training commands under `torchrun --nproc_per_node N`.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; `init` reads them and
joins the process group (NCCL on CUDA, gloo on CPU). Without those variables everything here is a
no-op, so single-process runs use the identical code path.

What changes with several processes:
- each rank trains on its shard of every epoch (`DistributedSampler`, seeded per epoch);
- gradients are averaged by DistributedDataParallel;
- contrastive losses see the negatives of *all* ranks: embeddings are all-gathered with gradient
  (`gather_with_grad`), so the effective batch is the global batch, as in SimCLR/CLMR's
  multi-GPU runs. Every rank then computes the same global loss; the all-gather's backward sums
  the identical gradients of all ranks and DDP divides by the world size, so each parameter gets
  exactly the gradient of the global loss. Only NT-Xent is gathered: the playlist objective's
  supervised-contrastive loss and the batch statistics of Barlow Twins / VICReg stay per rank;
- BatchNorm statistics are synchronised (SyncBatchNorm) on CUDA with more than one process;
  gloo has no SyncBatchNorm kernels, so CPU runs keep per-rank statistics;
- only rank 0 writes checkpoints, logs and plots.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from musicssl.engine.device import select_device
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a (possibly one-process) training job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init(device_preference: str = "auto", timeout_s: float = 1800.0) -> DistContext:
    """Join the torchrun process group if there is one; pick this rank's device.

    With CUDA each local rank takes GPU `LOCAL_RANK`; an explicit `cpu` keeps all ranks on CPU
    (gloo), which is also how the tests run two processes on a laptop.
    """
    device = select_device(device_preference)
    world = env_world_size()
    if world <= 1:
        return DistContext(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        if device.type == "mps":
            raise RuntimeError("multi-process training on MPS is not supported; use --device cpu")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend,
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    return DistContext(rank, world, local_rank, device, backend)


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def prepare_module(module: nn.Module, ctx: DistContext) -> nn.Module:
    """SyncBatchNorm where it works (CUDA, > 1 process); call before building the optimizer."""
    if ctx.enabled and ctx.device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return module


def wrap(module: nn.Module, ctx: DistContext) -> nn.Module:
    """DistributedDataParallel around `module` when distributed, else `module` itself.

    `find_unused_parameters` is on because objectives legitimately leave parameters out of some
    steps (a model's tag head during SSL, a BYOL predictor on the target side).
    """
    if not ctx.enabled:
        return module
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        module, device_ids=device_ids, find_unused_parameters=True
    )


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def sampler(
    dataset: Dataset, ctx: DistContext, seed: int, shuffle: bool = True, drop_last: bool = True
) -> DistributedSampler:
    """This rank's shard of each epoch; call `set_epoch` so each epoch shuffles differently.

    Used in single-process runs too (one replica), so the order of examples, and therefore a
    resumed run, is defined in one place.
    """
    return DistributedSampler(
        dataset,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
    )


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' `x` concatenated along dim 0 (rank order); gradients flow back to each rank.

    Plain `dist.all_gather` returns tensors detached from the graph, which would leave the other
    ranks' embeddings as constants and halve (or worse) the contrastive gradient.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def gathered_nt_xent(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.5,
    loss_fn: Callable[..., torch.Tensor] | None = None,
) -> torch.Tensor:
    """NT-Xent over the global batch: both views are gathered from every rank first."""
    if loss_fn is None:
        from musicssl.training.losses import nt_xent as loss_fn
    return loss_fn(gather_with_grad(z1), gather_with_grad(z2), temperature)


@contextlib.contextmanager
def global_negatives(ctx: DistContext) -> Iterator[None]:
    """While active, `losses.nt_xent` (as the objectives call it) gathers across ranks.

    The objectives are written for one process and call the loss function by name; rather than
    teach every objective about process groups, the loss they look up is swapped for its
    gathered form for the duration of a distributed run, and restored afterwards.
    """
    if not ctx.enabled:
        yield
        return
    import importlib
    import pkgutil
    import sys

    from musicssl.training import losses, objectives

    original = losses.nt_xent

    def patched(z1: torch.Tensor, z2: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return original(gather_with_grad(z1), gather_with_grad(z2), *args, **kwargs)

    modules = [losses]
    for info in pkgutil.iter_modules(objectives.__path__, objectives.__name__ + "."):
        modules.append(importlib.import_module(info.name))
    modules.append(sys.modules[objectives.__name__])
    swapped = [m for m in modules if getattr(m, "nt_xent", None) is original]
    for module in swapped:
        module.nt_xent = patched
    try:
        yield
    finally:
        for module in swapped:
            module.nt_xent = original


def all_reduce_mean(values: Mapping[str, float], ctx: DistContext) -> dict[str, float]:
    """Average scalar metrics over ranks (for logs); identity in single-process runs."""
    if not ctx.enabled or not values:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if ctx.backend == "nccl":
        tensor = tensor.to(ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    tensor /= ctx.world_size
    return dict(zip(keys, tensor.cpu().tolist(), strict=True))


def broadcast_flag(flag: bool, ctx: DistContext) -> bool:
    """True on every rank if it is True on any (used so all ranks stop at the same step)."""
    if not ctx.enabled:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0])
    if ctx.backend == "nccl":
        tensor = tensor.to(ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


__all__ = [
    "DistContext",
    "all_reduce_mean",
    "barrier",
    "broadcast_flag",
    "env_world_size",
    "gather_with_grad",
    "gathered_nt_xent",
    "global_negatives",
    "init",
    "prepare_module",
    "sampler",
    "shutdown",
    "unwrap",
    "wrap",
]
