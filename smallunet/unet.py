"""CondSequential and the Unet: ResnetBlocks and AttnBlocks at several
resolutions, joined by a stack of skip connections."""
from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from ._checks import (check_attn_resolutions, check_ch_mult, check_dtype, check_float, check_floating,
                      check_groups, check_image, check_int, check_sigma)
from .attention import AttnBlock
from .embedding import SigmaEmbedderSinCos
from .norm import Normalize
from .resample import Downsample, Upsample
from .resnet import ResnetBlock
from .denoiser import ModelMixin


class CondSequential(nn.Sequential):
    """nn.Sequential whose modules all take a second argument, the
    embedding."""

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        for module in self._modules.values():
            x = module(x, cond)
        return x


class Unet(nn.Module, ModelMixin):
    """The U-Net of DDPM as in smalldiffusion: predicts the noise in an image.

    Args:
        in_dim: height and width of the (square) input; divisible by
            2**(len(ch_mult) - 1) so that every Downsample halves it exactly.
        in_ch, out_ch: channels of the input image and of the prediction.
        ch: channels of the first level (a multiple of 32).
        ch_mult: one multiplier of ``ch`` per resolution level, top to bottom.
        embed_ch_mult: the noise embedding has ``ch * embed_ch_mult`` channels.
        num_res_blocks: ResnetBlocks per level on the way down (one more on the way up), >= 1.
        attn_resolutions: resolutions (side lengths) at which an AttnBlock follows each
            ResnetBlock; each must be one the model reaches.
        dropout: dropout probability in the ResnetBlocks, in [0, 1).
        resamp_with_conv: kept for smalldiffusion's signature; resampling always
            uses a convolution.
        sig_embed: module mapping (B, sigma) to (B, ch * embed_ch_mult); default
            SigmaEmbedderSinCos.
        cond_embed: module mapping labels (B,) to (B, ch * embed_ch_mult), such as
            CondEmbedderLabel; the model then needs ``cond`` in every call.
    """

    def __init__(self, in_dim: int, in_ch: int, out_ch: int,
                 ch: int                        = 128,
                 ch_mult: tuple[int, ...]       = (1, 2, 2, 2),
                 embed_ch_mult: int             = 4,
                 num_res_blocks: int            = 2,
                 attn_resolutions: tuple[int, ...] = (16,),
                 dropout: float                 = 0.1,
                 resamp_with_conv: bool         = True,
                 sig_embed: nn.Module | None    = None,
                 cond_embed: nn.Module | None   = None,
                 ):
        super().__init__()
        # 0. Check the settings before building anything.
        ch_mult, attn_resolutions = _check_unet_args(
            in_dim, in_ch, out_ch, ch, ch_mult, embed_ch_mult, num_res_blocks,
            attn_resolutions, dropout, sig_embed, cond_embed)

        self.ch = ch
        self.in_dim = in_dim
        self.in_ch, self.out_ch = in_ch, out_ch
        self.ch_mult = ch_mult
        self.attn_resolutions = attn_resolutions
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.input_dims = (in_ch, in_dim, in_dim)
        self.temb_ch = ch * embed_ch_mult

        # 1. Embeddings of sigma (and of the label, if conditional), both (B, temb_ch).
        self.sig_embed = sig_embed or SigmaEmbedderSinCos(self.temb_ch)
        self.cond_embed = cond_embed

        def make_block(block_in, block_out):
            return ResnetBlock(in_ch=block_in, out_ch=block_out,
                               temb_channels=self.temb_ch, dropout=dropout)

        # 2. Down: at each level num_res_blocks blocks, then a Downsample (not after the last).
        curr_res = in_dim
        in_ch_dim = [ch * m for m in (1,) + ch_mult]     # channels entering each level
        self.conv_in = nn.Conv2d(in_ch, ch, kernel_size=3, stride=1, padding=1)
        self.downs = nn.ModuleList()
        for i, (block_in, block_out) in enumerate(pairwise(in_ch_dim)):
            down = nn.Module()
            down.blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                block = [make_block(block_in, block_out)]
                if curr_res in attn_resolutions:
                    block.append(AttnBlock(block_out))
                down.blocks.append(CondSequential(*block))
                block_in = block_out
            if i < self.num_resolutions - 1:
                down.downsample = Downsample(block_in)
                curr_res = curr_res // 2
            self.downs.append(down)

        # 3. Middle: block, attention, block at the lowest resolution.
        self.mid = CondSequential(
            make_block(block_in, block_in),
            AttnBlock(block_in),
            make_block(block_in, block_in),
        )

        # 4. Up: num_res_blocks + 1 blocks per level, each taking one skip from the stack.
        self.ups = nn.ModuleList()
        for i_level, (block_out, next_skip_in) in enumerate(pairwise(reversed(in_ch_dim))):
            up = nn.Module()
            up.blocks = nn.ModuleList()
            skip_in = block_out
            for i_block in range(num_res_blocks + 1):
                if i_block == num_res_blocks:
                    skip_in = next_skip_in      # the last skip of a level comes from the level above
                block = [make_block(block_in + skip_in, block_out)]
                if curr_res in attn_resolutions:
                    block.append(AttnBlock(block_out))
                up.blocks.append(CondSequential(*block))
                block_in = block_out
            if i_level < self.num_resolutions - 1:
                up.upsample = Upsample(block_in)
                curr_res = curr_res * 2
            self.ups.append(up)

        # 5. Out: normalise, activate, project to out_ch.
        self.out_layer = nn.Sequential(
            Normalize(block_in),
            nn.SiLU(),
            nn.Conv2d(block_in, out_ch, kernel_size=3, stride=1, padding=1),
        )

    def embed(self, x: torch.Tensor, sigma: torch.Tensor,
              cond: torch.Tensor | None) -> torch.Tensor:
        """The embedding every ResnetBlock receives: (B, temb_ch)."""
        self._check_embed(x, sigma, cond)
        one = sigma.numel() == 1             # one sigma for the whole batch
        sigma = sigma.reshape(()) if one else sigma.reshape(-1)
        emb = self.sig_embed(x.shape[0], sigma)          # (B, temb_ch)
        if self.cond_embed is not None:
            emb = emb + self.cond_embed(cond)            # (B, temb_ch)
        return emb

    def forward(self, x: torch.Tensor, sigma: torch.Tensor,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        """(B, in_ch, in_dim, in_dim), sigma with 1 or B values
        -> (B, out_ch, in_dim, in_dim)"""
        self._check_input(x)
        # 1. Embeddings
        emb = self.embed(x, sigma, cond)              # (B, temb_ch)

        # 2. Down: every output is pushed on the skip stack hs
        hs = [self.conv_in(x)]                        # (B, ch, H, W)
        for down in self.downs:
            for block in down.blocks:
                hs.append(block(hs[-1], emb))
            if hasattr(down, "downsample"):
                hs.append(down.downsample(hs[-1]))    # (B, C, H/2, W/2)

        # 3. Middle
        h = self.mid(hs[-1], emb)

        # 4. Up: every block pops one skip, concatenated on the channels
        for up in self.ups:
            for block in up.blocks:
                h = block(torch.cat([h, hs.pop()], dim=1), emb)
            if hasattr(up, "upsample"):
                h = up.upsample(h)                    # (B, C, 2H, 2W)

        # 5. Out
        return self.out_layer(h)                      # (B, out_ch, H, W)

    # --- the checks, one call away from embed and forward ----------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        """x must be (B, in_ch, in_dim, in_dim), floating, in the weights' dtype."""
        check_image("x", x, channels=self.in_ch, size=self.in_dim)
        check_floating("x", x)
        check_dtype("x", x, self.conv_in.weight)

    def _check_embed(self, x: torch.Tensor, sigma: torch.Tensor, cond) -> None:
        """sigma holds 1 or B values; cond holds B labels exactly when the Unet is
        conditional."""
        check_sigma(sigma, x.shape[0])
        if self.cond_embed is None and cond is not None:
            raise ValueError("this Unet is unconditional (cond_embed is None) but got cond; pass "
                             "cond=None, or build the Unet with cond_embed=CondEmbedderLabel(...)")
        if self.cond_embed is not None:
            if cond is None:
                raise ValueError(f"this Unet is conditional (cond_embed is set): pass labels, cond "
                                 f"of shape ({x.shape[0]},)")
            is_tensor = isinstance(cond, torch.Tensor)
            if not is_tensor or cond.shape[:1] != x.shape[:1]:
                got = tuple(cond.shape) if is_tensor else type(cond).__name__
                raise ValueError(f"cond must have the batch of x ({x.shape[0]},), got {got}")


# --- the checks of Unet's settings ----------------------------------------------------------
def _check_unet_args(in_dim, in_ch, out_ch, ch, ch_mult, embed_ch_mult, num_res_blocks,
                     attn_resolutions, dropout, sig_embed, cond_embed) -> tuple[tuple, tuple]:
    """Unet's settings, each checked; returns (ch_mult, attn_resolutions) as tuples."""
    check_int("in_dim", in_dim, minimum=1)
    check_int("in_ch", in_ch, minimum=1)
    check_int("out_ch", out_ch, minimum=1)
    check_int("ch", ch, minimum=1)
    check_groups("ch", ch)
    ch_mult = check_ch_mult(ch_mult)
    for m in ch_mult:
        check_groups(f"ch * {m} (ch={ch}, ch_mult={ch_mult})", ch * m)
    check_int("embed_ch_mult", embed_ch_mult, minimum=1)
    check_int("num_res_blocks", num_res_blocks, minimum=1)  # with 0, no block widens ch to ch * m
    check_float("dropout", dropout, low=0.0, high=1.0, high_open=True)
    factor = 2 ** (len(ch_mult) - 1)
    if in_dim % factor != 0:
        raise ValueError(
            f"in_dim={in_dim} must be divisible by {factor} = 2**(len(ch_mult)-1) with "
            f"ch_mult={ch_mult}: each Downsample floors an odd size (7 -> 3) and the "
            f"Upsample that mirrors it doubles (3 -> 6), so the skips would not fit")
    resolutions = [in_dim // 2 ** i for i in range(len(ch_mult))]
    attn_resolutions = check_attn_resolutions(attn_resolutions, resolutions)
    for name, module in (("sig_embed", sig_embed), ("cond_embed", cond_embed)):
        if module is not None and not isinstance(module, nn.Module):
            raise TypeError(f"{name} must be an nn.Module or None, got {type(module).__name__}")
    return ch_mult, attn_resolutions
