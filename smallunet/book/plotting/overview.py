"""Figures for the book's introduction: noise levels on real images, and a map of the
whole U-Net drawn from a model instance (so the map cannot drift from the code)."""
from __future__ import annotations

from typing import Sequence

import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ...attention import AttnBlock
from ...resnet import ResnetBlock
from ...denoiser import alpha
from .common import figure, show_image

__all__ = ["plot_noise_levels", "unet_layout", "plot_unet_map"]


@torch.no_grad()
def plot_noise_levels(x0: torch.Tensor, sigmas: Sequence[float], row_titles: Sequence[str] | None = None,
                      seed: int = 0) -> Figure:
    """x0 + sigma * eps for each image (rows) and noise level (columns), scaled by
    sqrt(alpha(sigma)) = 1 / sqrt(1 + sigma^2), as the Scaled U-Net sees it."""
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    fig = figure(1.35 * len(sigmas) + 0.6, 1.4 * len(x0) + 0.4)
    axes = fig.subplots(len(x0), len(sigmas), squeeze=False)
    for j, sigma in enumerate(sigmas):
        s = torch.tensor(float(sigma))
        xt = (x0 + s * eps) * alpha(s).sqrt()                  # (B, C, H, W)
        for i in range(len(x0)):
            show_image(axes[i, j], xt[i], title=f"σ = {sigma:g}" if i == 0 else None, vmin=-1.5, vmax=1.5)
    if row_titles is not None:
        for i, name in enumerate(row_titles):
            axes[i, 0].set_ylabel(name, fontsize=9)
    return fig


def unet_layout(unet) -> tuple[list[dict], list[tuple[int, int]]]:
    """The U-Net's modules in the order ``forward`` runs them, and its skip connections.

    Returns (nodes, skips): each node is a dict with ``label``, ``level`` (0 = full
    resolution) and ``kind``; each skip is (index of the node whose output is pushed
    on the stack, index of the up-block that pops it).
    """
    def describe(seq):
        res = [m for m in seq if isinstance(m, ResnetBlock)]
        attn = any(isinstance(m, AttnBlock) for m in seq)
        r = res[0]
        label = f"Res\n{r.in_ch}→{r.out_ch}" if r.in_ch != r.out_ch else f"Res\n{r.out_ch}"
        return label + ("\n+Attn" if attn else ""), ("attn" if attn else "res")

    nodes, stack, skips = [], [], []
    nodes.append(dict(label=f"conv_in\n{unet.in_ch}→{unet.ch}", level=0, kind="conv"))
    stack.append(0)
    level = 0
    for down in unet.downs:
        for block in down.blocks:
            label, kind = describe(block)
            nodes.append(dict(label=label, level=level, kind=kind))
            stack.append(len(nodes) - 1)
        if hasattr(down, "downsample"):
            level += 1
            nodes.append(dict(label="Down", level=level, kind="down"))
            stack.append(len(nodes) - 1)
    mid = [m for m in unet.mid]
    nodes.append(dict(label=f"mid\nRes, Attn,\nRes {mid[0].out_ch}", level=level + 0.75, kind="mid"))
    for up in unet.ups:
        for block in up.blocks:
            label, kind = describe(block)
            nodes.append(dict(label=label, level=level, kind=kind))
            skips.append((stack.pop(), len(nodes) - 1))
        if hasattr(up, "upsample"):
            level -= 1
            nodes.append(dict(label="Up", level=level, kind="up"))
    nodes.append(dict(label=f"out\n→{unet.out_ch}", level=0, kind="conv"))
    return nodes, skips


_COLORS = {"conv": "#dddddd", "res": "#cfe2f3", "attn": "#f9cb9c", "down": "#d9ead3",
           "up": "#d9ead3", "mid": "#ead1dc"}


def plot_unet_map(unet) -> Figure:
    """A map of the U-Net: one box per module in the order ``forward`` runs them,
    lower rows for lower resolutions, and an arc for every skip connection."""
    nodes, skips = unet_layout(unet)
    n = len(nodes)
    levels = int(max(node["level"] for node in nodes if node["kind"] != "mid")) + 1
    dy, half_w, half_h = 1.9, 0.42, 0.42
    ys = [-dy * node["level"] for node in nodes]
    arc_height = lambda span: 0.35 + 0.045 * span
    top = max((arc_height(b - a) + ys[a] + half_h for a, b in skips), default=half_h) + 0.15
    bottom = min(ys) - half_h - 0.6
    left, right = -1.9, n - 0.4
    inch = 0.62                                    # per unit on both axes: arc3 curves in display space
    fig = figure(inch * (right - left), inch * (top - bottom), layout=None)
    ax = fig.add_axes([0.0, 0.0, 1.0, 1.0])
    for a, b in skips:                             # arcs first, so the boxes sit on top
        span = b - a
        ax.add_patch(FancyArrowPatch((a, ys[a] + half_h), (b, ys[b] + half_h),
                                     connectionstyle=f"arc3,rad={-2 * arc_height(span) / span:.3f}",
                                     arrowstyle="-|>", mutation_scale=8, color="0.55", lw=0.8))
    for k in range(n - 1):                         # the main path
        ax.annotate("", xy=(k + 1 - half_w, ys[k + 1]), xytext=(k + half_w, ys[k]),
                    arrowprops=dict(arrowstyle="-|>", color="0.15", lw=0.9, shrinkA=0, shrinkB=0))
    for k, node in enumerate(nodes):
        ax.add_patch(FancyBboxPatch((k - half_w, ys[k] - half_h), 2 * half_w, 2 * half_h,
                                    boxstyle="round,pad=0.02", facecolor=_COLORS[node["kind"]],
                                    edgecolor="0.3", lw=0.8))
        ax.text(k, ys[k], node["label"], ha="center", va="center", fontsize=7.5, linespacing=1.05)
    res = unet.in_dim
    for lev in range(levels):
        mult = unet.ch_mult[lev]
        ax.text(-0.6, -dy * lev, f"{res // 2 ** lev}×{res // 2 ** lev}\n{unet.ch * mult} ch",
                ha="right", va="center", fontsize=8, color="0.3")
    ax.text(n / 2 - 0.5, bottom + 0.2,
            f"Every Res block also receives the embedding of σ ({unet.temb_ch} numbers).  "
            f"Grey arcs: skip connections, concatenated on the channels.",
            ha="center", va="center", fontsize=8, color="0.3")
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.axis("off")
    return fig
