"""The machine: the fastest device present (CUDA, then Apple MPS, then the CPU),
whether it computes bf16 natively, and the CPU's name for results files."""
from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

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


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_name(device: torch.device | str) -> str:
    """The accelerator (or CPU, with its core count) that ``device`` runs on, for records."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"{cpu_name()} ({os.cpu_count()} cores)"
    return device.type


def bf16_supported(device: torch.device | str) -> bool:
    """Whether bf16 autocast is fast here: a GPU of compute capability 8.0 or more
    (Ampere on; a T4 answers ``torch.cuda.is_bf16_supported()`` True through slow
    emulation), or a CPU with native bf16 instructions (x86 AVX512-BF16 or AMX-BF16,
    Arm's BF16 extension), not merely AVX-512, with oneDNN's bf16 kernels available."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        flags = _cpu_flags()
        native = bool({"avx512_bf16", "amx_bf16"} & flags) or "bf16" in flags
        return native and torch.backends.mkldnn.is_available()
    return False


def auto_precision(device: torch.device | str) -> str:
    """What ``TrainConfig(precision="auto")`` trains in on ``device``: "bf16" where it is
    native (``bf16_supported``); "fp16" with gradient scaling on a GPU without it (a T4,
    a V100: compute capability below 8.0); else "fp32" (the CPU without bf16, MPS)."""
    device = torch.device(device)
    if bf16_supported(device):
        return "bf16"
    return "fp16" if device.type == "cuda" else "fp32"


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device | str, precision: str = "bf16"):
    """Autocast to ``precision`` ("bf16", "fp16"; "fp32": off) on ``device``: the one
    helper the package and the chapters use. Off is a null context, never
    ``torch.autocast(..., enabled=False)``, which raises on Apple MPS with torch < 2.5."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"precision must be one of 'bf16', 'fp16', 'fp32', got {precision!r}")
    return torch.autocast(torch.device(device).type, dtype=AUTOCAST_DTYPES[precision])


def bf16_autocast(device: torch.device | str, enabled: bool = True):
    """bf16 autocast on ``device``, or a null context when off (see ``autocast``).
    The sampling helpers use it."""
    return autocast(device, "bf16" if enabled else "fp32")
