"""Several processes, one per GPU, under ``torchrun`` (DistributedDataParallel); a
single process is the same code with a world of one.

Each process finds its place from torchrun's environment (WORLD_SIZE, RANK,
LOCAL_RANK), trains on its own GPU with its share of every batch, and averages the
gradients with the others in the backward pass. Decisions taken by a clock (stop,
save) are rank 0's, broadcast to all: a rank that left the loop on its own clock
would leave the others waiting in a collective forever.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from .device import default_device

DECIDE_EVERY = 10   # steps between two shared stop/save decisions under DDP


def world_and_rank() -> tuple[int, int]:
    """(number of processes, this process's rank), from torchrun's environment."""
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))


def setup_process(device, world: int) -> torch.device:
    """This process's device, with the process group started: default CUDA, then MPS,
    then the CPU; under torchrun an explicit 'cuda' is LOCAL_RANK's GPU; the backend is
    the one the device needs (NCCL for CUDA, else gloo). On CUDA it also turns on TF32
    matmuls and cuDNN's benchmark mode."""
    device = torch.device(default_device() if device is None else device)
    if device.type == "cuda" and device.index is None and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r}: CUDA is not available on this machine "
                         f"(torch {torch.__version__}); use device='cpu' or leave it None")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return device


def wrap_for_processes(model: nn.Module, device: torch.device, world: int) -> nn.Module:
    """What the forward pass runs through: DDP over ``world`` processes, else the model."""
    if world == 1:
        return model
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def decide(stop: bool, save: bool, world: int, device: torch.device) -> tuple[bool, bool]:
    """(stop, save) as rank 0 decided them, on every rank."""
    if world == 1:
        return stop, save
    flags = torch.tensor([stop, save], dtype=torch.uint8,
                         device=device if dist.get_backend() == "nccl" else "cpu")
    dist.broadcast(flags, src=0)
    return bool(flags[0]), bool(flags[1])


def gather(obj, world: int) -> list:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` alone)."""
    if world == 1:
        return [obj]
    gathered = [None] * world
    dist.all_gather_object(gathered, obj)
    return gathered
