"""Normalize: the GroupNorm used everywhere in the U-Net."""
from __future__ import annotations

from torch import nn

from ._checks import check_groups, check_int

NUM_GROUPS = 32  # as in DDPM's U-Net: GroupNorm(32) before the 3x3 convolutions of each ResnetBlock,
                 # the attention of each AttnBlock and the output convolution


def Normalize(ch: int) -> nn.GroupNorm:
    """GroupNorm over ``ch`` channels in 32 groups.

    Each image is normalised on its own (statistics over the channels of a
    group and all pixels), so one image's output never depends on its
    batch-mates, unlike BatchNorm. ``ch`` must be divisible by 32.
    (B, ch, H, W) -> (B, ch, H, W)
    """
    check_int("ch", ch, minimum=1)
    check_groups("ch", ch, NUM_GROUPS)
    return nn.GroupNorm(num_groups=NUM_GROUPS, num_channels=ch, eps=1e-6,
                        affine=True)
