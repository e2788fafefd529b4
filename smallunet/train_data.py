"""What the trainer accepts as training data, checked once at the entry point (not in
every step): images as one float tensor (N, in_ch, in_dim, in_dim) of finite values in
[-1, 1], at least a batch of them, and for a conditional recipe one integer label per
image in [0, num_classes)."""
from __future__ import annotations

import torch

from ._checks import check_tensor
from .train_config import TrainConfig


def check_training_data(data, cfg: TrainConfig) -> torch.Tensor:
    """Images must be a float tensor (N, in_ch, in_dim, in_dim) of finite values in [-1, 1]."""
    check_tensor("data", data)
    if not data.is_floating_point():
        raise TypeError(f"data must be a floating-point tensor in [-1, 1], got dtype {data.dtype} "
                        f"(for uint8 images use x.float() / 127.5 - 1)")
    if data.dim() != 4 or tuple(data.shape[1:]) != (cfg.in_ch, cfg.in_dim, cfg.in_dim):
        raise ValueError(f"data must have shape (N, {cfg.in_ch}, {cfg.in_dim}, {cfg.in_dim}), got {tuple(data.shape)}")
    if len(data) < cfg.batch_size:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the data set ({len(data)} images)")
    if not torch.isfinite(data).all():
        raise ValueError(f"data holds {int((~torch.isfinite(data)).sum())} NaN or infinite values")
    lo, hi = float(data.min()), float(data.max())
    if lo < -1 - 1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"data must lie in [-1, 1] (the schedule assumes it), got values from {lo:.4g} to {hi:.4g}")
    return data


def check_labels(labels, data: torch.Tensor, cfg: TrainConfig) -> torch.Tensor | None:
    """Labels: None for an unconditional recipe, else (N,) integers in [0, num_classes)."""
    if not cfg.num_classes:
        if labels is not None:
            raise ValueError("labels given but cfg.num_classes=0 (unconditional); set num_classes")
        return None
    if labels is None:
        raise ValueError(f"cfg.num_classes={cfg.num_classes}: pass labels, an (N,) integer tensor")
    check_tensor("labels", labels)
    if labels.is_floating_point() or labels.dtype == torch.bool or tuple(labels.shape) != (len(data),):
        raise ValueError(f"labels must be an integer tensor of shape ({len(data)},), got dtype "
                         f"{labels.dtype} and shape {tuple(labels.shape)}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= cfg.num_classes:
        raise ValueError(f"labels must be in [0, {cfg.num_classes}), got values from {lo} to {hi}")
    return labels
