"""Figures for the book's introduction: noise levels on real images, and a map of the
whole U-Net drawn from a model instance (so the map cannot drift from the code)."""
from __future__ import annotations

from typing import Sequence

import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch, Rectangle
from torch import nn

from ...attention import AttnBlock
from ...resnet import ResnetBlock
from .training import noise_levels
from .common import figure

__all__ = ["plot_noise_levels", "unet_layout", "plot_unet_map"]


def plot_noise_levels(x0: torch.Tensor, sigmas: Sequence[float], row_titles: Sequence[str] | None = None,
                      seed: int = 0) -> Figure:
    """x0 + sigma * eps for each image (rows) and noise level (columns), scaled by
    1 / sqrt(1 + sigma^2) as the Scaled U-Net sees it: ``training.noise_levels``'s
    "scaled" row, one per image. At most 6.2 inches wide (620 px at the inline
    backend's 100 dpi, so the page shows it at the size it is drawn)."""
    fig = noise_levels(x0, sigmas, rows=("scaled",), row_titles=row_titles, seed=seed, show_std=False)
    w, h = fig.get_size_inches()
    if w > 6.2:
        fig.set_size_inches(6.2, h * 6.2 / w)
    return fig


def _conv_channels(module) -> tuple[int, int]:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[0].in_channels, convs[-1].out_channels


def unet_layout(unet) -> tuple[list[dict], list[tuple[int, int]]]:
    """The U-Net's modules in the order ``forward`` runs them, and its skip connections.

    Returns (nodes, skips). Each node is a dict with ``name`` (the module's name in
    ``unet.named_modules()``), ``label``, ``kind`` (conv, res, attn, down, up or mid),
    ``in_ch``, ``out_ch`` and ``level``, the resolution of its output (0 = in_dim,
    k = in_dim / 2**k; the mid block is on the last level). Each skip is (index of the
    node whose output ``forward`` pushes on the stack, index of the up block that pops it).
    """
    nodes, stack, skips = [], [], []

    def add(name, label, kind, in_ch, out_ch, level, push=False):
        arrow = f"{in_ch}→{out_ch}" if in_ch != out_ch else f"{out_ch}"
        nodes.append(dict(name=name, label=f"{label} {arrow}", kind=kind, in_ch=in_ch, out_ch=out_ch,
                          level=level))
        if push:
            stack.append(len(nodes) - 1)

    def add_block(name, block, level, push):
        res = [m for m in block if isinstance(m, ResnetBlock)][0]
        attn = any(isinstance(m, AttnBlock) for m in block)
        add(name, "Res+Attn" if attn else "Res", "attn" if attn else "res", res.in_ch, res.out_ch, level, push)

    level = 0
    add("conv_in", "conv_in", "conv", *_conv_channels(unet.conv_in), level, push=True)
    for i, down in enumerate(unet.downs):
        for j, block in enumerate(down.blocks):
            add_block(f"downs.{i}.blocks.{j}", block, level, push=True)
        if hasattr(down, "downsample"):
            level += 1                                 # its output is already at the lower resolution
            add(f"downs.{i}.downsample", "Down", "down", *_conv_channels(down.downsample), level, push=True)
    mid_ch = _conv_channels(unet.mid)
    add("mid", "mid: Res, Attn, Res", "mid", *mid_ch, level)
    for i, up in enumerate(unet.ups):
        for j, block in enumerate(up.blocks):
            add_block(f"ups.{i}.blocks.{j}", block, level, push=False)
            skips.append((stack.pop(), len(nodes) - 1))
        if hasattr(up, "upsample"):
            level -= 1
            add(f"ups.{i}.upsample", "Up", "up", *_conv_channels(up.upsample), level)
    add("out_layer", "out", "conv", *_conv_channels(unet.out_layer), level)
    return nodes, skips


def _rows(nodes, skips) -> list[tuple[str, int]]:
    """(arm, row) of every node: the pushed nodes go down the left arm, one row each and
    an empty row before each Down (where the right arm's Up sits); every up block sits on
    the row of the node it pops, so each skip is horizontal; the mid block sits below."""
    place, row, popped = {}, 0, {b: a for a, b in skips}
    for k, node in enumerate(nodes):
        if node["kind"] == "mid":
            break
        row += 1 if node["kind"] == "down" else 0
        place[k] = ("left", row)
        row += 1
    place[k] = ("mid", row)
    for k in range(k + 1, len(nodes)):
        place[k] = ("right", place[popped[k]][1] if k in popped else place[k - 1][1] - 1)
    return [place[k] for k in range(len(nodes))]


_COLORS = {"conv": "#dddddd", "res": "#cfe2f3", "attn": "#f9cb9c", "down": "#d9ead3",
           "up": "#d9ead3", "mid": "#ead1dc"}
_LEGEND = {"conv": "convolution in / out", "res": "Res: ResnetBlock", "attn": "Res+Attn: ResnetBlock, AttnBlock",
           "down": "Down / Up: resampling", "mid": "mid: the middle block"}


def plot_unet_map(unet, width: float = 6.3) -> Figure:
    """A map of the U-Net drawn from ``unet``: the down path descends the left arm and the
    up path climbs the right one, one band per resolution (the mid block at the bottom of
    the last), every skip a horizontal grey arrow labelled with the channels it carries.

    ``width`` is in inches: at the inline backend's 100 dpi, 6.3 in and its 0.1 in of
    padding make 650 px, which a 660 px book column shows unscaled (labels 11-12 px high)."""
    nodes, skips = unet_layout(unet)
    place = _rows(nodes, skips)
    levels = max(node["level"] for node in nodes) + 1
    rh, bh, bw, indent, fs = 0.34, 0.22, 1.3, 0.26, 8.5            # inches and points
    x0, x1 = 0.75, width - 0.05                                   # the arms' outer edges
    n_rows = max(row for _, row in place) + 1
    legend_h = 0.55
    height = (n_rows + 1) * rh + legend_h
    fig = figure(width, height, layout=None)
    ax = fig.add_axes([0.0, 0.0, 1.0, 1.0])
    y_of = lambda row: height - (row + 1.5) * rh                  # row -1 is the input's row

    def centre(k):
        arm, row = place[k]
        lev = nodes[k]["level"]
        x = {"left": x0 + lev * indent + bw / 2, "right": x1 - lev * indent - bw / 2,
             "mid": (x0 + x1) / 2}[arm]
        return x, y_of(row)

    for lev in range(levels):                                    # one shaded band per resolution
        rows = [place[k][1] for k, node in enumerate(nodes) if node["level"] == lev]
        top, bottom = min(rows) - (1 if lev == 0 else 0), max(rows)
        ax.add_patch(Rectangle((0, y_of(bottom) - rh / 2), width, (bottom - top + 1) * rh,
                               facecolor="0.96" if lev % 2 == 0 else "0.91", edgecolor="none", zorder=0))
        side = unet.in_dim // 2 ** lev
        ax.text(0.08, y_of((top + bottom) / 2), f"{side}×{side}", ha="left", va="center", fontsize=9,
                color="0.25", fontweight="bold")
    boxes = []
    for k, node in enumerate(nodes):
        x, y = centre(k)
        w = 1.55 if node["kind"] == "mid" else bw
        boxes.append(FancyBboxPatch((x - w / 2, y - bh / 2), w, bh, boxstyle="round,pad=0.015",
                                    facecolor=_COLORS[node["kind"]], edgecolor="0.3", lw=0.7, zorder=3))
        ax.add_patch(boxes[-1])
        ax.text(x, y, node["label"], ha="center", va="center", fontsize=fs, zorder=4)
    arrow = dict(arrowstyle="-|>", mutation_scale=8, shrinkA=1, shrinkB=1, zorder=2)
    for k in range(len(nodes) - 1):                              # the main path
        ax.add_patch(FancyArrowPatch(centre(k), centre(k + 1), patchA=boxes[k], patchB=boxes[k + 1],
                                     color="0.15", lw=0.9, **arrow))
    for a, b in skips:                                           # horizontal: same row by construction
        (xa, y), (xb, _) = centre(a), centre(b)
        ax.add_patch(FancyArrowPatch((xa, y), (xb, y), patchA=boxes[a], patchB=boxes[b],
                                     color="0.6", lw=0.9, **arrow))
        ax.text((xa + xb) / 2, y + 0.015, f"{nodes[a]['out_ch']}", ha="center", va="bottom", fontsize=8,
                color="0.4", zorder=2)
    (xi, yi), (xo, yo) = centre(0), centre(len(nodes) - 1)
    ax.annotate(f"input x ({unet.in_ch} ch)", xy=(xi, yi + bh / 2), xytext=(xi, yi + rh), ha="center",
                va="center", fontsize=fs, arrowprops=dict(arrowstyle="-|>", color="0.15", lw=0.9))
    ax.text(xo - 0.7 * bw, yo, "predicted ε", ha="right", va="center", fontsize=fs)
    handles = [Patch(facecolor=_COLORS[k], edgecolor="0.3", lw=0.7, label=v) for k, v in _LEGEND.items()]
    handles.append(Line2D([], [], color="0.6", lw=0.9, label="skip, concatenated (its channels)"))
    ax.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False, handlelength=1.4,
              columnspacing=1.0, borderaxespad=0.1)
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    return fig
