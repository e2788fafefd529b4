"""The CPU speed tricks, in one place; the model's plain forms are what the chapters read.

Two layers are slow on the CPU in their plain form, and this module holds the faster ones.
Both leave the state_dict and the outputs' meaning unchanged.

* Attention: ``scaled_dot_product_attention`` is ``F.scaled_dot_product_attention``,
  except in bf16 on the CPU for at most ``EXPLICIT_MAX_TOKENS`` tokens, where two matmuls
  and a softmax train 1.6-3x faster than the fused kernel for the short sequences of
  this U-Net (49 and 196 tokens; forward and backward, one thread, batch 128). At 784
  tokens the two are even; past that, in fp32 and on GPUs the fused kernel wins
  (bench/attention.md, written by bench/attention_speed.py). Both compute the same thing
  (tests/test_components.py). ``Attention.forward`` calls it.
* Dropout: ``nn.Dropout`` on the CPU draws its mask with ``bernoulli_``: one 32-bit draw
  of a single-threaded generator per element, about 7 ns each here, which makes dropout
  0.1 cost the seed recipe 13 % of its training throughput on one thread and more on
  two (the other layers use both threads; the generator does not). ``FastDropout`` draws
  one 31-bit integer per *two* elements and compares 16 (or 15) bits of it with a
  threshold, so the keep probability is 1 - p rounded to a multiple of 2^-15 (p = 0.1
  becomes 0.100006), and the kept values are scaled by the exact inverse of that rate,
  so the layer stays unbiased. The U-Net itself keeps ``nn.Dropout`` (its training-mode
  outputs match smalldiffusion's for the same seed); the trainer swaps in
  ``FastDropout`` on the CPU (``TrainConfig.fast_dropout``, ``use_fast_dropout``).
"""
from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_float

# --- attention -----------------------------------------------------------------------------
EXPLICIT_MAX_TOKENS = 512


def use_explicit_attention(q: torch.Tensor) -> bool:
    """True where ``scaled_dot_product_attention`` computes softmax(q k^T / sqrt(d)) v
    with two matmuls rather than ``F.scaled_dot_product_attention``: bf16 tensors on
    the CPU, at most ``EXPLICIT_MAX_TOKENS`` tokens (q is (B, heads, N, head_dim))."""
    return q.device.type == "cpu" and q.dtype == torch.bfloat16 and q.shape[-2] <= EXPLICIT_MAX_TOKENS


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor,
                                 v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(head_dim)) v, each (B, heads, N, head_dim):
    F.scaled_dot_product_attention, or two matmuls and a softmax where
    they are faster (use_explicit_attention)."""
    if use_explicit_attention(q):
        scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # (B,h,N,N)
        return torch.softmax(scores, dim=-1) @ v
    return F.scaled_dot_product_attention(q, k, v)


# --- dropout -------------------------------------------------------------------------------
BITS = 15                       # bits compared per element: the resolution of p


def effective_p(p: float) -> float:
    """The drop probability FastDropout applies for a requested ``p``: the nearest
    multiple of 2^-15 (kept below 1)."""
    check_float("p", p, low=0.0, high=1.0, high_open=True)
    return min(round(p * 2 ** BITS), 2 ** BITS - 1) / 2 ** BITS


def keep_mask(shape: tuple[int, ...] | torch.Size, p: float,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """A boolean mask of ``shape`` on the CPU, each entry True with probability
    1 - effective_p(p), independently. One ``random_`` int32 (31 random bits) covers two
    entries: its low 16 bits (read as an int16, uniform over [-2^15, 2^15)) and its high
    15 bits (uniform over [0, 2^15))."""
    t = round(effective_p(p) * 2 ** BITS)            # drop when the 15-bit value is below t
    n = math.prod(shape)
    pairs = (n + 1) // 2
    r = torch.empty(pairs, dtype=torch.int32).random_(generator=generator)   # [0, 2^31)
    halves = r.view(torch.int16).view(pairs, 2)          # (low 16 bits, high 15 bits) on little-endian
    lo, hi = (0, 1) if sys.byteorder == "little" else (1, 0)
    keep = torch.empty(pairs, 2, dtype=torch.bool)
    torch.ge(halves[:, lo], -2 ** 15 + 2 * t, out=keep[:, 0])   # uniform on [-2^15, 2^15): P(drop) = t / 2^15
    torch.ge(halves[:, hi], t, out=keep[:, 1])                  # uniform on [0, 2^15): P(drop) = t / 2^15
    return keep.view(-1)[:n].view(shape)


class _ScaleByMask(torch.autograd.Function):
    """x * keep * scale, and the same for the gradient. The mask is kept as 0/1 in x's
    dtype (from uint8: converting from bool is ten times slower here), and the scale is
    applied after it so that it rounds once per element, as nn.Dropout's does."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        m = keep.view(torch.uint8).to(x.dtype)
        ctx.save_for_backward(m)
        ctx.scale = scale
        return x.mul(m).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (m,) = ctx.saved_tensors
        return grad.mul(m).mul_(ctx.scale), None, None


class FastDropout(nn.Dropout):
    """``nn.Dropout`` with the cheaper mask of ``keep_mask`` for CPU tensors in training
    mode (drop probability ``effective_p(p)``); elsewhere (eval mode, other devices,
    ``inplace``) exactly ``nn.Dropout``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        p = effective_p(self.p)
        if p == 0:
            return x
        return _ScaleByMask.apply(x, keep_mask(x.shape, p), 1.0 / (1.0 - p))


def use_fast_dropout(model: nn.Module) -> int:
    """Replace every ``nn.Dropout`` of ``model`` by a ``FastDropout`` of the same p,
    in place; returns how many were replaced."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    count = 0
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p, inplace=child.inplace).train(child.training))
                count += 1
    return count
