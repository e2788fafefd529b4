"""Small input checks shared by the public entry points.

Each raises ``TypeError`` or ``ValueError`` with a message that names what was
expected and what was given, so a reader who types a wrong size is told what to
fix instead of getting a stack trace from deep inside PyTorch.
"""
from __future__ import annotations

import math
import numbers

import torch


def check_int(name: str, value, *, minimum: int | None = None) -> int:
    """``value`` must be an int (not a bool), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {name}={value}")
    return int(value)


def check_float(name: str, value, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` must be a finite real number in the given interval."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    lo = "(" if low_open or low is None else "["
    hi = ")" if high_open or high is None else "]"
    interval = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high or not math.isfinite(value):
        raise ValueError(f"{name} must be in {interval}, got {name}={value}")
    return value


def check_tensor(name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_floating(name: str, value) -> torch.Tensor:
    """``value`` must be a floating-point tensor (images and noise levels are real numbers)."""
    check_tensor(name, value)
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype} "
                        f"(convert with .float())")
    return value


def check_groups(name: str, ch: int, groups: int = 32) -> None:
    """GroupNorm with ``groups`` groups needs a channel count divisible by it."""
    if ch % groups != 0:
        raise ValueError(
            f"{name}={ch} must be divisible by {groups} (GroupNorm uses {groups} groups); "
            f"try {max(groups, round(ch / groups) * groups)}"
        )


def check_image(name: str, x, *, channels: int, size: int | None = None) -> torch.Tensor:
    """``x`` must be a (B, channels, size, size) tensor."""
    check_tensor(name, x)
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W) (4 dimensions), "
                         f"got {x.dim()} dimensions with shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels, got shape {tuple(x.shape)} "
                         f"with {x.shape[1]} channels")
    if size is not None and (x.shape[2] != size or x.shape[3] != size):
        raise ValueError(f"{name} must be {size}x{size} (shape (B, {channels}, {size}, {size})), "
                         f"got {x.shape[2]}x{x.shape[3]} (shape {tuple(x.shape)})")
    return x


def check_sigma(sigma, batch: int) -> torch.Tensor:
    """``sigma`` is one noise level for all (shape () or any shape with one element)
    or one per example (B elements, such as (B,) or (B, 1, 1, 1))."""
    check_tensor("sigma", sigma)
    if sigma.numel() != 1 and sigma.numel() != batch:
        raise ValueError(f"sigma must hold 1 value or one per example ({batch}), got shape "
                         f"{tuple(sigma.shape)} with {sigma.numel()} values")
    return sigma


def check_ch_mult(ch_mult) -> tuple[int, ...]:
    """Unet's ``ch_mult``: a non-empty tuple of positive ints."""
    if isinstance(ch_mult, (str, bytes)) or not hasattr(ch_mult, "__iter__"):
        raise TypeError(f"ch_mult must be a tuple of positive ints such as (1, 2, 2), got {ch_mult!r}")
    ch_mult = tuple(ch_mult)
    if len(ch_mult) == 0:
        raise ValueError("ch_mult must hold at least one multiplier (one per resolution), got ()")
    for m in ch_mult:
        if isinstance(m, bool) or not isinstance(m, numbers.Integral):
            raise TypeError(f"ch_mult must hold ints, got {ch_mult!r} (bad entry {m!r}, "
                            f"{type(m).__name__})")
        if m < 1:
            raise ValueError(f"ch_mult must hold positive ints, got {ch_mult!r} (bad entry {m!r})")
    return tuple(int(m) for m in ch_mult)


def check_attn_resolutions(attn_resolutions, resolutions: list[int]) -> tuple[int, ...]:
    """Unet's ``attn_resolutions``: a tuple of ints, each one of the model's ``resolutions``."""
    if isinstance(attn_resolutions, numbers.Integral):
        raise TypeError(f"attn_resolutions must be a tuple of ints such as ({attn_resolutions},), "
                        f"got the int {attn_resolutions}")
    if isinstance(attn_resolutions, (str, bytes)) or not hasattr(attn_resolutions, "__iter__"):
        raise TypeError(f"attn_resolutions must be a tuple of ints such as (16,), got {attn_resolutions!r}")
    attn_resolutions = tuple(attn_resolutions)
    for r in attn_resolutions:
        if isinstance(r, bool) or not isinstance(r, numbers.Integral):
            raise TypeError(f"attn_resolutions must hold ints, got {attn_resolutions!r} "
                            f"(bad entry {r!r}, {type(r).__name__})")
        if r not in resolutions:
            raise ValueError(f"attn_resolutions={attn_resolutions} holds {r}, which the model never "
                             f"reaches: its resolutions are {tuple(resolutions)}")
    return attn_resolutions


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


def check_dtype(name: str, x: torch.Tensor, weight: torch.Tensor) -> None:
    """``x`` must have the dtype of the weights it meets (autocast casts by itself)."""
    if x.dtype != weight.dtype and not torch.compiler.is_compiling() and not _autocast_on(x.device.type):
        raise TypeError(f"{name} has dtype {x.dtype} but the model's weights are {weight.dtype}; "
                        f"pass {name}.to({weight.dtype})")
