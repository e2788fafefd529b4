"""ResnetBlock: two convolutions, the noise embedding added in between, and a
residual connection."""
from __future__ import annotations

import torch
from torch import nn

from ._checks import check_float, check_groups, check_int
from .norm import Normalize


class ResnetBlock(nn.Module):
    """x -> x' + layer2(layer1(x) + temb_proj(temb)), with x' = x or a projection
    of x when the channel count changes.

    Args:
        in_ch: channels of the input (a multiple of 32).
        out_ch: channels of the output (a multiple of 32); ``None`` keeps ``in_ch``.
        conv_shortcut: project the shortcut with a 3x3 convolution instead of a 1x1
            one (only used when ``in_ch != out_ch``).
        dropout: dropout probability before the second convolution, in [0, 1).
        temb_channels: width of the noise embedding ``temb``.
    """

    def __init__(self, *, in_ch: int, out_ch: int | None = None, conv_shortcut: bool = False,
                 dropout: float, temb_channels: int = 512):
        super().__init__()
        check_int("in_ch", in_ch, minimum=1)
        check_groups("in_ch", in_ch)
        out_ch = in_ch if out_ch is None else out_ch
        check_int("out_ch", out_ch, minimum=1)
        check_groups("out_ch", out_ch)
        check_float("dropout", dropout, low=0.0, high=1.0, high_open=True)
        check_int("temb_channels", temb_channels, minimum=1)
        self.in_ch, self.out_ch = in_ch, out_ch
        self.temb_channels = temb_channels
        self.use_conv_shortcut = bool(conv_shortcut)

        self.layer1 = nn.Sequential(
            Normalize(in_ch),
            nn.SiLU(),
            nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1),
        )
        self.temb_proj = nn.Sequential(
            nn.SiLU(),
            nn.Linear(temb_channels, out_ch),
        )
        self.layer2 = nn.Sequential(
            Normalize(out_ch),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Conv2d(out_ch, out_ch, kernel_size=3, stride=1, padding=1),
        )
        if in_ch != out_ch:
            kernel, stride, padding = (3, 1, 1) if self.use_conv_shortcut else (1, 1, 0)
            self.shortcut = nn.Conv2d(in_ch, out_ch, kernel, stride, padding)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """(B, in_ch, H, W), (B, temb_channels) -> (B, out_ch, H, W)"""
        if x.dim() != 4 or x.shape[1] != self.in_ch:
            raise ValueError(f"x must have shape (B, {self.in_ch}, H, W), "
                             f"got {tuple(x.shape)}")
        if (temb.dim() != 2 or temb.shape[1] != self.temb_channels
                or temb.shape[0] not in (1, x.shape[0])):
            raise ValueError(f"temb must have shape ({x.shape[0]}, "
                             f"{self.temb_channels}), "
                             f"got {tuple(temb.shape)}")
        h = self.layer1(x)                              # (B, out_ch, H, W)
        # (B, out_ch) -> (B, out_ch, 1, 1), broadcast over H, W
        h = h + self.temb_proj(temb)[:, :, None, None]
        h = self.layer2(h)                              # (B, out_ch, H, W)
        if self.in_ch != self.out_ch:
            x = self.shortcut(x)                        # (B, out_ch, H, W)
        return x + h
