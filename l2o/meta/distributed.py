"""Multi-process meta-training (`torchrun --nproc_per_node=N l2o-train ...`).

Data parallel over the meta-batch: every process draws the same problem seeds (the seed
sampler is identical everywhere), runs its own contiguous share of them, and the
meta-gradients are averaged with one all-reduce per meta-step before clipping and Adam, so
every process holds the same φ and the run equals one process with the whole meta-batch
(to float tolerance). Validation problems are shared out the same way and their losses
summed. Only rank 0 writes logs and checkpoints. torch.distributed does the communication:
NCCL between GPUs, gloo on CPUs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable, Sequence

import torch
import torch.distributed as dist

from l2o.errors import L2OError


@dataclass(frozen=True)
class World:
    """This process's place in the run; `World()` is the single-process run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def share(self, items: Sequence[Any], what: str) -> list[Any]:
        """This rank's contiguous, equal share of `items` (meta-batch seeds must split evenly)."""
        if len(items) % self.size:
            raise L2OError(f"{what}={len(items)} does not split evenly over {self.size} processes; "
                           f"use a multiple of {self.size}.")
        n = len(items) // self.size
        return list(items[self.rank * n : (self.rank + 1) * n])

    def average_gradients(self, params: Iterable[torch.Tensor], *extra: torch.Tensor) -> list[torch.Tensor]:
        """Mean of every process's gradients, written back into `.grad`, plus the mean of
        `extra` scalars (e.g. the meta-loss), all in one all-reduce."""
        params = [p for p in params if p.grad is not None]
        if not self.distributed:
            return list(extra)
        flat = torch.cat([p.grad.reshape(-1) for p in params] + [e.detach().reshape(1) for e in extra])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
            offset += p.numel()
        return list(flat[offset:].unbind())

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            values = values.clone()
            dist.all_reduce(values)
        return values

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when it is true on one (e.g. a signal seen by one process)."""
        if not self.distributed:
            return flag
        return bool(self.sum(torch.tensor([float(flag)], device=device)) > 0)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's value of a picklable object, on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def init_world(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun describes in the environment (WORLD_SIZE, RANK, ...);
    without torchrun this is the single-process World. On CUDA each process takes the GPU
    of its LOCAL_RANK."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), device
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise L2OError(f"LOCAL_RANK={world.local_rank} but only {torch.cuda.device_count()} GPUs are visible; "
                           "use --nproc_per_node <= the number of GPUs.")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=30))
    return world, device


def close_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
