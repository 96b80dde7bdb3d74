"""Data parallelism under ``accelerate launch`` (several GPUs, or several CPU processes in the tests).

Every process sees the same batch order and trains on its share of each batch (an equal share of
each class); before each optimiser step the mapping network's gradients are averaged across
processes, and the KL term's batch-mean class distributions are averaged too. Every loss term is
a mean over equal shares, so N processes with a global batch B make the same updates as one
process with batch B (up to float rounding). Edits are split across processes and gathered, so
evaluation returns the same images on every process. Only the main process writes files.

One process (no ``WORLD_SIZE`` > 1 in the environment) needs none of this and imports nothing.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Ranks:
    """This process's place among ``world`` data-parallel processes."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> slice:
        """This process's contiguous part of ``n`` items (sizes differ by at most one)."""
        return slice(self.rank * n // self.world, (self.rank + 1) * n // self.world)

    def even_share(self, n: int, what: str) -> slice:
        """Like ``share`` but every process must get the same count (training batches)."""
        if n % self.world:
            raise ValueError(f"{what}={n} does not split evenly over {self.world} processes: "
                             f"use a multiple of {self.world}")
        return self.share(n)

    def batch_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over dim 0 of the global batch (differentiable); shares must be equal."""
        m = x.mean(0)
        if self.world == 1:
            return m
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(m) / self.world

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """Element-wise mean of a tensor across processes (no gradient)."""
        if self.world == 1:
            return x
        x = x.detach().clone()
        torch.distributed.all_reduce(x)
        return x / self.world

    def average_gradients(self, params) -> None:
        """Average ``.grad`` of ``params`` across processes in one flat all-reduce. A parameter that
        got no gradient in this process (a branch its share never took) but did in another counts as a
        zero gradient here, as in DDP: otherwise the processes' flat vectors would not line up."""
        if self.world == 1:
            return
        params = list(params)
        if not params:
            return
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=params[0].device)
        torch.distributed.all_reduce(has)  # how many processes have each gradient
        present = [p for p, n in zip(params, has.tolist()) if n]
        for p in present:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in present]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate every process's ``x`` (any length along dim 0) in rank order, on the CPU."""
        if self.world == 1:
            return x
        parts: list = [None] * self.world
        torch.distributed.all_gather_object(parts, x.cpu())
        return torch.cat(parts)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def ranks() -> Ranks:
    """The current process's ranks; starts the process group through accelerate when launched with
    several processes (gloo on CPU, NCCL on CUDA)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Ranks()
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    atexit.unregister(_destroy_process_group)  # registered once, however often ranks() is called
    atexit.register(_destroy_process_group)
    return Ranks(state.process_index, state.num_processes)


def _destroy_process_group() -> None:
    """Ends the process group while the interpreter is still whole: left to interpreter shutdown,
    gloo's worker threads can outlive Python and abort the process (SIGABRT, "terminate called
    without an active exception") after all work is done."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def local_device(device: str) -> str:
    """``cuda`` becomes this process's own GPU (``cuda:LOCAL_RANK``) under a multi-process launch."""
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device
