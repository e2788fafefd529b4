"""What a network costs: parameters, FLOPs of a forward pass (attention on the CPU
included), and the cost model of a DiT of the same size, for the U-Net chapter's
comparison. Needs torch >= 2.4 (FlopCounterMode crediting modules)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ..attention import Attention


def count_parameters(module: nn.Module) -> int:
    """Number of scalars in the module's parameters."""
    return sum(p.numel() for p in module.parameters())


class _AttentionCountingMode(FlopCounterMode):
    """FlopCounterMode that also counts attention on the CPU: FlopCounterMode has no
    formula for the CPU's fused kernel of ``scaled_dot_product_attention``, so while it
    counts, attention runs through PyTorch's math backend (``sdpa_kernel``), whose two
    batched matmuls, QK^T and (softmax)V, it does count: what the GPU kernels cost."""

    def __enter__(self):
        self._math = sdpa_kernel(SDPBackend.MATH)
        self._math.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._math.__exit__(*exc)


def flop_counter() -> FlopCounterMode:
    """A silent FlopCounterMode that also counts attention on the CPU."""
    return _AttentionCountingMode(display=False, depth=None)


def dit_cost(in_dim: int = 28, channels: int = 1, patch_size: int = 2, depth: int = 6,
             head_dim: int = 32, num_heads: int = 6, mlp_ratio: float = 4.0) -> dict[str, int]:
    """Parameters and FLOPs of one forward pass of a DiT (Peebles and Xie, 2023) laid
    out as smalldiffusion's ``DiT``: patch embedding, ``depth`` blocks of adaLN-modulated
    attention and MLP, a modulated final layer. The defaults are smalldiffusion's
    FashionMNIST DiT. Built from this package's Attention and plain layers, only to
    be counted (it is never trained here)."""
    dim, n_tok = head_dim * num_heads, (in_dim // patch_size) ** 2
    patch = patch_size ** 2 * channels

    def block():
        return nn.ModuleDict(dict(
            mod=nn.Linear(dim, 6 * dim),                       # scale, shift, gate of two norms
            attn=Attention(head_dim, num_heads, qkv_bias=True),
            mlp=nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU("tanh"),
                              nn.Linear(int(dim * mlp_ratio), dim))))
    embed = nn.ModuleDict(dict(patch=nn.Conv2d(channels, dim, patch_size, patch_size),
                               sigma=nn.Sequential(nn.Linear(2, dim), nn.SiLU(), nn.Linear(dim, dim))))
    final = nn.ModuleDict(dict(mod=nn.Linear(dim, 2 * dim), linear=nn.Linear(dim, patch)))
    blocks = [block() for _ in range(depth)]
    params = count_parameters(embed) + count_parameters(final) + sum(count_parameters(b) for b in blocks)
    counter = flop_counter()
    with counter, torch.no_grad():
        tok = embed["patch"](torch.zeros(1, channels, in_dim, in_dim)).flatten(2).transpose(1, 2)  # (1, N, D)
        y = embed["sigma"](torch.zeros(1, 2))                 # (1, D)
        for b in blocks:
            b["mod"](y)
            tok = tok + b["attn"](tok)
            tok = tok + b["mlp"](tok)
        final["linear"](tok + final["mod"](y)[:, None, :dim])   # (1, N, p*p*C)
    return dict(params=params, flops=counter.get_total_flops(), tokens=n_tok, width=dim)
