"""Upsample and Downsample: halve or double the resolution between U-Net levels."""
from __future__ import annotations

from torch import nn

from ._checks import check_int


def Upsample(ch: int) -> nn.Sequential:
    """Nearest-neighbour doubling, then a 3x3 convolution to smooth the
    blocks. (B, ch, H, W) -> (B, ch, 2H, 2W)
    """
    check_int("ch", ch, minimum=1)
    return nn.Sequential(
        nn.Upsample(scale_factor=2.0, mode="nearest"),
        nn.Conv2d(ch, ch, kernel_size=3, stride=1, padding=1),
    )


def Downsample(ch: int) -> nn.Sequential:
    """A stride-2 3x3 convolution after padding one row at the bottom and
    one column at the right (not on all sides):
    H -> (H + 1 - 3) // 2 + 1 = H // 2, so an even size is halved exactly
    and an odd one is floored (7 -> 3).
    (B, ch, H, W) -> (B, ch, H // 2, W // 2)
    """
    check_int("ch", ch, minimum=1)
    return nn.Sequential(
        nn.ConstantPad2d((0, 1, 0, 1), 0),  # (left, right, top, bottom)
        nn.Conv2d(ch, ch, kernel_size=3, stride=2, padding=0),
    )
