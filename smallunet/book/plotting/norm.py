"""Figures for the chapter Normalize (GroupNorm against BatchNorm)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .common import figure

__all__ = ["plot_norm_axes", "plot_batch_dependence", "plot_output_scale"]

# which (image, channel) squares one statistic pools, for a batch of N images of C channels
_POOLS = {
    "BatchNorm": lambda n, c, g: [(i, 0) for i in range(n)],
    "LayerNorm": lambda n, c, g: [(0, j) for j in range(c)],
    "InstanceNorm": lambda n, c, g: [(0, 0)],
    "GroupNorm": lambda n, c, g: [(0, j) for j in range(c // g)],
}


def plot_norm_axes(n: int = 4, c: int = 8, groups: int = 4) -> Figure:
    """Which numbers one mean and variance are computed over, for four normalisations.

    Each panel is a batch: a row per image (B), a column per channel (C); each square
    stands for all H x W pixels of one channel of one image. The shaded squares are
    pooled into one statistic; GroupNorm pools C / groups channels of one image.
    """
    fig = figure(6.6, 4.6)
    axes = fig.subplots(2, 2).flat
    for ax, (name, pool) in zip(axes, _POOLS.items()):
        shaded = set(pool(n, c, groups))
        for i in range(n):
            for j in range(c):
                ax.add_patch(Rectangle((j, n - 1 - i), 1, 1, edgecolor="0.35", lw=0.8,
                                       facecolor="tab:blue" if (i, j) in shaded else "white"))
        if name == "GroupNorm":   # the group boundaries of the first image
            for k in range(0, c + 1, c // groups):
                ax.plot([k, k], [n - 1, n], color="tab:red", lw=2)
        ax.set_xlim(-0.1, c + 0.1)
        ax.set_ylim(-0.1, n + 0.1)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_xlabel("C  (channels)")
        ax.set_ylabel("B  (images)")
        ax.set_title(name)
    ax.text(c / 2, -0.9, f"{groups} groups of {c // groups} channels", ha="center",
            va="top", color="tab:red", fontsize=9)
    fig.suptitle("One mean and one variance are computed over the shaded squares\n"
                 "(each square: all H×W pixels of one channel of one image)", fontsize=10)
    return fig


def plot_batch_dependence(sigmas: Sequence[float], change_gn: Sequence[float],
                          change_bn: Sequence[float], own_sigma: float) -> Figure:
    """How much one image's normalised features change when its batch-mates change.

    ``change_*[k]`` is the relative change ||y_k - y_ref|| / ||y_ref|| of image 0's
    output when its batch-mates are at noise level ``sigmas[k]`` instead of at
    ``own_sigma`` (the level of image 0 itself, which does not change).
    """
    fig = figure(6, 3.4)
    ax = fig.subplots()
    ax.plot(sigmas, change_bn, "o-", color="tab:orange", label="BatchNorm (train mode)")
    ax.plot(sigmas, change_gn, "s-", color="tab:blue", label="GroupNorm (Normalize)")
    ax.axvline(own_sigma, color="0.6", ls=":", lw=1)
    ax.text(own_sigma, ax.get_ylim()[1] * 0.95, f" image 0's own σ = {own_sigma:g}", color="0.4",
            fontsize=8, va="top")
    ax.set_xscale("log")
    ax.set_xlabel("σ of the 7 other images in the batch")
    ax.set_ylabel("relative change of image 0's output")
    ax.set_title("Image 0 is the same in every batch; only its batch-mates change", fontsize=10)
    ax.legend(loc="center left")
    ax.grid(alpha=0.3)
    return fig


def plot_output_scale(sigmas: Sequence[float], std_gn: Sequence[float],
                      std_bn: Sequence[float]) -> Figure:
    """Standard deviation of the normalised features of images at one noise level,
    against that level: what the next layer sees at each step of sampling."""
    fig = figure(6, 3.4)
    ax = fig.subplots()
    ax.plot(sigmas, std_bn, "o-", color="tab:orange",
            label="BatchNorm, eval mode (running statistics of mixed-σ batches)")
    ax.plot(sigmas, std_gn, "s-", color="tab:blue", label="GroupNorm (Normalize)")
    ax.axhline(1.0, color="0.6", ls=":", lw=1)
    ax.set_xscale("log")
    lo, hi = float(np.min([std_gn, std_bn])), float(np.max([std_gn, std_bn]))
    ax.set_ylim(min(0.5, lo - 0.1), max(1.5, hi + 0.1))
    ax.set_xlabel("σ of every image in the batch")
    ax.set_ylabel("std of the normalised features")
    ax.set_title("The scale the next layer sees, at each noise level", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return fig
