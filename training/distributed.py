"""Data-parallel training on torch.distributed, launched by torchrun: the same trainer, plan,
checkpoints and resume on one process or many.

    torchrun --nproc-per-node 2 --no-python .venv/bin/alignserve train reward --grad-accum 2 ...
    # several machines: the same command on each, with
    #   --nnodes N --node-rank R --rdzv-backend c10d --rdzv-endpoint HEAD:29500
    # one process per GPU: --nproc-per-node <GPUs> (NCCL); on CPUs, gloo

Every process builds the same batch plan from the seed. An optimizer step's `grad_accum`
micro-batches are dealt out over the processes (so grad_accum must be a multiple of their
number), each back-propagates its own, and the gradients are summed across processes before
clipping and the step: the same update a single process makes with the same effective batch,
up to the order of floating-point sums (and dropout masks, which each process draws from its own
seed). Rank 0 alone shows progress and writes checkpoints; every rank can resume from them.
After training, the other ranks stop (`WorkerDone`) and rank 0 calibrates, evaluates and writes
the model as a single process would.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist


class WorkerDone(SystemExit):
    """Raised on ranks other than 0 once training is over: their part is done, and the process
    exits with status 0 (a SystemExit, so no `except Exception` on the way stops it)."""

    def __init__(self) -> None:
        super().__init__(0)


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) alone."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def setup(device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, gloo on CPUs) when launched by torchrun."""
    rank, size, local = world()
    if size == 1 or active():
        return
    if device.type == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if rank == 0:
        print(f"data-parallel over {size} processes ({dist.get_backend()})")


def threads_per_process() -> int:
    """On CPUs, the cores shared between the processes of this machine."""
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(1, (os.cpu_count() or 1) // local_size)


def sum_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Sum every gradient across the processes (one flat all-reduce)."""
    if not active():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def sum_values(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Statistics (loss, accuracy) summed across the processes, for the progress bar."""
    if not active():
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.tolist(), strict=True))


def barrier() -> None:
    if active():
        dist.barrier()


def finish() -> None:
    """Leave the process group; ranks other than 0 then stop."""
    if not active():
        return
    rank = dist.get_rank()
    dist.barrier()
    dist.destroy_process_group()
    if rank != 0:
        raise WorkerDone
