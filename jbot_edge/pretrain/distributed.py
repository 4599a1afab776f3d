"""torchrun / DDP helpers. Everything degrades to single-process behaviour when not launched by torchrun."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def is_enabled() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_enabled() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_enabled() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def init(device_type: str) -> None:
    """Join the process group torchrun set up (NCCL on CUDA, gloo on CPU); no-op for a single process."""
    if not launched_by_torchrun() or is_enabled():
        return
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))


def shutdown() -> None:
    if is_enabled():
        dist.destroy_process_group()


def barrier() -> None:
    if is_enabled():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (returns the tensor for chaining)."""
    if is_enabled():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    if is_enabled():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= get_world_size()
    return tensor


def broadcast_object(obj: object, src: int = 0) -> object:
    if not is_enabled():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
