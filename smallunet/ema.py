"""The exponential moving average (EMA) of the weights, which is what gets sampled.

After every optimizer step each averaged weight moves a small step towards the model's:
ema <- ema + (1 - d) (p - ema), with d = 0.999 about a thousand steps of memory. Early
in a run a fixed d would keep the random initialisation for thousands of steps, so the
decay warms up as min(d, (1 + n) / (10 + n)) after n updates.

    ema = make_ema(model, decay=0.999, warmup=True)
    ...                                      # after each optimizer step:
    ema.update_parameters(model)
    ema.module                               # the averaged network
"""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_multi_avg_fn(decay: float, warmup: bool):
    """In-place EMA update for AveragedModel:
    ema <- ema + (1 - d) (p - ema)."""
    @torch.no_grad()
    def update(ema_params, params, num_averaged):
        d = torch.as_tensor(decay, device=num_averaged.device,
                            dtype=torch.float32)
        if warmup:
            n = num_averaged.to(torch.float32)
            d = torch.minimum(d, (1 + n) / (10 + n))
        w = (1 - d)
        if ema_params and ema_params[0].dtype != torch.float32:
            w = w.to(ema_params[0].dtype)
        for e, p in zip(ema_params, params):
            e.lerp_(p, w)                  # e + w (p - e)
    return update


def make_ema(model: nn.Module, decay: float, warmup: bool) -> AveragedModel:
    """A copy of ``model`` (parameters and buffers) that ``update_parameters(model)``
    averages with ``ema_multi_avg_fn``; its first update copies the model."""
    return AveragedModel(model, multi_avg_fn=ema_multi_avg_fn(decay, warmup), use_buffers=True)
