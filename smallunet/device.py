"""Pick the fastest device that is present: CUDA, then Apple MPS, then the CPU."""
from __future__ import annotations

import torch


def default_device() -> torch.device:
    """The device to train and sample on: ``cuda`` if there is a GPU, else ``mps``
    on Apple silicon, else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a model's parameters live on (the CPU for a model without any)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
