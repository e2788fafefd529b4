"""Multi-head self-attention, and AttnBlock: attention over the pixels of a
feature map."""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ._checks import check_groups, check_int
# F.scaled_dot_product_attention, with a faster explicit form for bf16 on the CPU;
# EXPLICIT_MAX_TOKENS and use_explicit_attention are re-exported from here as before
from .cpu_speedups import (EXPLICIT_MAX_TOKENS, scaled_dot_product_attention,  # noqa: F401
                           use_explicit_attention)
from .norm import Normalize


class Attention(nn.Module):
    """softmax(q k^T / sqrt(head_dim)) v, in ``num_heads`` heads of ``head_dim``
    channels each, with one linear layer making q, k and v and one projecting back.
    (B, N, D) -> (B, N, D) with D = num_heads * head_dim.
    """

    def __init__(self, head_dim: int, num_heads: int = 8, qkv_bias: bool = False):
        super().__init__()
        check_int("head_dim", head_dim, minimum=1)
        check_int("num_heads", num_heads, minimum=1)
        self.num_heads, self.head_dim = num_heads, head_dim
        dim = head_dim * num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, N, D) -> q, k, v, each (B, heads, N, head_dim)"""
        dim = self.num_heads * self.head_dim
        if x.dim() != 3 or x.shape[-1] != dim:
            raise ValueError(f"x must have shape (B, N, {dim}), got {tuple(x.shape)}")
        return rearrange(self.qkv(x), "b n (qkv h k) -> qkv b h n k",
                         h=self.num_heads, k=self.head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)"""
        q, k, v = self.qkv_heads(x)         # each (B, heads, N, head_dim)
        x = scaled_dot_product_attention(q, k, v)   # (B, heads, N, d)
        x = rearrange(x, "b h n k -> b n (h k)")   # (B, N, D)
        return self.proj(x)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The softmax weights themselves, for plots:
        (B, N, D) -> (B, heads, N, N); row i says how much token i
        takes from each token."""
        q, k, _ = self.qkv_heads(x)
        return self.softmax_weights(q, k)

    def softmax_weights(self, q: torch.Tensor,
                        k: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / sqrt(head_dim)) over the keys:
        (B, heads, N, N)."""
        scores = q @ k.transpose(-2, -1) / self.head_dim ** 0.5
        return torch.softmax(scores, dim=-1)


class AttnBlock(nn.Module):
    """GroupNorm, self-attention between all H*W pixels, a 1x1 convolution, and a
    residual connection. Each pixel can take information from any other pixel,
    which convolutions only reach after many layers.
    (B, ch, H, W) -> (B, ch, H, W)
    """

    def __init__(self, ch: int, num_heads: int = 1):
        super().__init__()
        check_int("ch", ch, minimum=1)
        check_groups("ch", ch)
        check_int("num_heads", num_heads, minimum=1)
        if ch % num_heads != 0:
            raise ValueError(f"num_heads={num_heads} must divide ch={ch} "
                             f"(each head gets ch // num_heads channels)")
        self.ch = ch
        self.norm = Normalize(ch)
        self.attn = Attention(head_dim=ch // num_heads, num_heads=num_heads)
        self.proj_out = nn.Conv2d(ch, ch, kernel_size=1, stride=1, padding=0)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised pixels as tokens: (B, ch, H, W) -> (B, H*W, ch)"""
        if x.dim() != 4 or x.shape[1] != self.ch:
            raise ValueError(f"x must have shape (B, {self.ch}, H, W), "
                             f"got {tuple(x.shape)}")
        return rearrange(self.norm(x), "b c h w -> b (h w) c")

    def forward(self, x: torch.Tensor,
                temb: torch.Tensor | None = None) -> torch.Tensor:
        """(B, ch, H, W) -> (B, ch, H, W); ``temb`` is ignored (it is
        there so that CondSequential can pass it to every block)."""
        tokens = self.tokens(x)          # (B, H*W, ch); checks x's shape
        H, W = x.shape[-2:]
        h = self.attn(tokens)                              # (B, H*W, ch)
        h = rearrange(h, "b (h w) c -> b c h w", h=H, w=W)  # (B, ch, H, W)
        return x + self.proj_out(h)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ch, H, W) -> (B, heads, H*W, H*W) attention weights."""
        return self.attn.attention_weights(self.tokens(x))
