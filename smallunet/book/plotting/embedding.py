"""Figures for the chapter The sigma embedding."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from matplotlib import cm, colors
from matplotlib.figure import Figure

from ...embedding import get_sigma_embeds
from ...denoiser import alpha
from .common import figure, show_image

__all__ = ["plot_sigma_scales", "plot_sincos", "plot_sincos_arcs", "plot_embedding",
           "peak_order", "sigma_embedding_frames"]

SIGMA_MIN, SIGMA_MAX = 0.01, 20.0
_NORM = colors.LogNorm(SIGMA_MIN, SIGMA_MAX)
_CMAP = "viridis"


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def plot_sigma_scales(sigmas) -> Figure:
    """The schedule's noise levels on a linear axis and on a log axis; those below 1
    are highlighted (their share of the schedule is printed on each axis)."""
    s = _numpy(sigmas)
    below = s < 1
    fig = figure(6.6, 3.0)
    axes = fig.subplots(2, 1)
    for ax, scale in zip(axes, ("linear", "log")):
        ax.scatter(s[~below], np.zeros((~below).sum()), marker="|", s=250, color="0.55", lw=0.6)
        ax.scatter(s[below], np.zeros(below.sum()), marker="|", s=250, color="tab:red", lw=0.6)
        ax.set_xscale(scale)
        ax.set_yticks([])
        ax.set_xlim(SIGMA_MIN * 0.8 if scale == "log" else -0.3, SIGMA_MAX * 1.25 if scale == "log" else 20.5)
        for side in ("left", "right", "top"):
            ax.spines[side].set_visible(False)
        lo, hi = (math.log(SIGMA_MIN), math.log(SIGMA_MAX)) if scale == "log" else (SIGMA_MIN, SIGMA_MAX)
        one = math.log(1.0) if scale == "log" else 1.0
        share = (one - lo) / (hi - lo)
        ax.set_title(f"{scale} axis: the {below.mean():.0%} of levels below σ = 1 (red) take "
                     f"{share:.0%} of the axis", fontsize=9, loc="left")
    axes[-1].set_xlabel("σ")
    return fig


def plot_sincos(sigmas, scaling_factor: float = 0.5) -> Figure:
    """The two numbers of get_sigma_embeds against sigma (log axis)."""
    s = torch.as_tensor(sigmas, dtype=torch.float32)
    e = _numpy(get_sigma_embeds(len(s), s, scaling_factor))
    fig = figure(6, 3.2)
    ax = fig.subplots()
    ax.plot(_numpy(s), e[:, 0], label=f"sin({scaling_factor:g} · log σ)")
    ax.plot(_numpy(s), e[:, 1], label=f"cos({scaling_factor:g} · log σ)")
    ax.set_xscale("log")
    ax.set_xlabel("σ")
    ax.set_ylim(-1.1, 1.1)
    ax.axhline(0, color="0.7", lw=0.8)
    ax.legend(loc="lower left", fontsize=9)
    ax.grid(alpha=0.3)
    ax.set_title("get_sigma_embeds: two numbers per noise level", fontsize=10)
    return fig


def _arc(ax, sigmas, scaling_factor: float, log_scale: bool, marks: Sequence[float]) -> None:
    s = torch.as_tensor(sigmas, dtype=torch.float32)
    e = _numpy(get_sigma_embeds(len(s), s, scaling_factor, log_scale))
    t = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.sin(t), np.cos(t), color="0.85", lw=1, zorder=0)
    ax.scatter(e[:, 0], e[:, 1], c=_numpy(s), cmap=_CMAP, norm=_NORM, s=6, zorder=2)
    m = torch.tensor(marks, dtype=torch.float32)
    em = _numpy(get_sigma_embeds(len(m), m, scaling_factor, log_scale))
    groups: list[tuple[float, float, list[str]]] = []       # marks closer than 0.2 share a label
    for (x, y), value in zip(em, marks):
        ax.plot(x, y, "o", mfc="none", mec="black", ms=7, zorder=3)
        near = [g for g in groups if math.hypot(g[0] - x, g[1] - y) < 0.2]
        if near:
            near[0][2].append(f"{value:g}")
        else:
            groups.append((float(x), float(y), [f"{value:g}"]))
    for x, y, names in groups:            # inside the circle, so no label reaches the next panel
        ax.annotate(" & ".join(names), (x, y), xytext=(0.68 * x, 0.68 * y), ha="center",
                    va="center", fontsize=9, annotation_clip=True,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    ax.set_aspect("equal")
    ax.set_xlim(-1.25, 1.25)
    ax.set_ylim(-1.25, 1.25)
    ax.set_xlabel("sin")
    ax.set_ylabel("cos")
    arg = f"{scaling_factor:g} · {'log σ' if log_scale else 'σ'}"
    ax.set_title(f"[sin, cos]({arg})", fontsize=9)


def plot_sincos_arcs(sigmas, configs: Sequence[tuple[float, bool]] = ((0.5, True), (1.0, True), (0.5, False)),
                     marks: Sequence[float] = (0.01, 0.1, 1, 5, 20)) -> Figure:
    """The curve that [sin, cos] traces as sigma goes from 0.01 to 20, one panel per
    (scaling_factor, log_scale); dots are the given sigmas, coloured by sigma."""
    fig = figure(2.0 * len(configs) + 0.6, 2.5)
    axes = fig.subplots(1, len(configs))
    for ax, (scaling, log_scale) in zip(np.atleast_1d(axes), configs):
        _arc(ax, sigmas, scaling, log_scale, marks)
    fig.colorbar(cm.ScalarMappable(norm=_NORM, cmap=_CMAP), ax=axes, label="σ", shrink=0.8)
    return fig


def plot_embedding(sigmas, emb, title: str, channels: int = 8) -> Figure:
    """A (N, D) embedding of N noise levels: a few of its channels against sigma, and
    the cosine similarity between the embeddings of every pair of noise levels."""
    s, e = _numpy(sigmas), _numpy(emb)
    fig = figure(6.6, 3.4)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.25, 1])
    step = max(1, e.shape[1] // channels)
    for j in range(0, step * channels, step):
        ax1.plot(s, e[:, j], lw=1.2, label=f"channel {j}")
    ax1.set_xscale("log")
    ax1.set_xlabel("σ")
    ax1.set_title(f"{title}: {channels} of its {e.shape[1]} channels", fontsize=9)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=7.5, ncols=2)
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    sim = unit @ unit.T
    ls = np.log10(s)
    im = ax2.imshow(sim, origin="lower", cmap="RdBu_r", vmin=-1, vmax=1,
                    extent=[ls[0], ls[-1], ls[0], ls[-1]])
    ticks = [t for t in (-2, -1, 0, 1) if ls[0] <= t <= ls[-1]]
    ax2.set_xticks(ticks, [f"{10.0 ** t:g}" for t in ticks])
    ax2.set_yticks(ticks, [f"{10.0 ** t:g}" for t in ticks])
    ax2.set_xlabel("σ")
    ax2.set_ylabel("σ'")
    ax2.set_title("cosine similarity of the\nembeddings of σ and σ'", fontsize=9)
    fig.colorbar(im, ax=ax2, shrink=0.85)
    return fig


def _noisy(x0: torch.Tensor, sigma: float, eps: torch.Tensor) -> torch.Tensor:
    """What the Scaled U-Net's first layer sees: sqrt(alpha(sigma)) * (x0 + sigma * eps)."""
    sigma_t = torch.tensor(sigma)
    return (x0 + sigma_t * eps) * alpha(sigma_t).sqrt()


def _embedding_square(vec: np.ndarray) -> np.ndarray:
    side = math.isqrt(vec.size)
    return vec[: side * side].reshape(side, side)


@torch.no_grad()
def peak_order(embedder, n_grid: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """The embedding's numbers ordered by the noise level at which each is largest.

    ``embedder(B, sigma)`` is evaluated on ``n_grid`` levels spaced evenly in log sigma over
    [0.01, 20]; number j peaks at the level where it is largest. Returns (order, peak):
    ``order`` lists the numbers by their peak level, the lowest first, numbers that peak at
    the same level by their peak value, the largest first; ``peak[j]`` is number j's level."""
    grid = torch.exp(torch.linspace(math.log(SIGMA_MIN), math.log(SIGMA_MAX), n_grid))
    emb = _numpy(embedder(n_grid, grid))                          # (n_grid, D)
    where = emb.argmax(0)                                          # (D,)
    order = np.lexsort((-emb.max(0), where))                       # by level, then by height
    return order, _numpy(grid)[where]


@torch.no_grad()
def sigma_embedding_frames(x0: torch.Tensor, embedder, sigmas: Sequence[float], *, default: int = 0,
                           scaling_factor: float = 0.5, seed: int = 0, caption: str | None = None):
    """A slider over ``sigmas`` (no kernel needed): the network input at that sigma, its
    point on the [sin, cos] arc, and the embedding from ``embedder`` as a square of pixels.
    The square has one layout in every frame: its numbers are read row by row in the order
    of ``peak_order`` (by the sigma at which each is largest over [0.01, 20]), and the ticks
    on its left mark where that sigma passes 0.1, 1 and 10. The embedding's colour scale is
    shared by all frames (99th percentile of |value|). Returns IPython HTML."""
    from .interactive import animate

    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    sig = torch.tensor(list(sigmas), dtype=torch.float32)
    order, peak = peak_order(embedder)
    emb = _numpy(embedder(len(sig), sig))[:, order]                   # (S, temb_ch), in peak order
    point = _numpy(get_sigma_embeds(len(sig), sig, scaling_factor))   # (S, 2)
    lim = float(np.percentile(np.abs(emb), 99))                       # a few larger ones saturate
    side = math.isqrt(emb.shape[1])
    fig = figure(6.6, 2.7)
    ax_img, ax_arc, ax_emb = fig.subplots(1, 3)
    show_image(ax_img, _noisy(x0, sigmas[default], eps), title="network input", vmin=-1.5, vmax=1.5)
    grid = torch.exp(torch.linspace(math.log(SIGMA_MIN), math.log(SIGMA_MAX), 100))
    _arc(ax_arc, grid, scaling_factor, True, [SIGMA_MIN, SIGMA_MAX])
    dot, = ax_arc.plot([], [], "o", color="red", ms=9, zorder=4)
    square = ax_emb.imshow(_embedding_square(emb[default]), cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax_emb.set_xticks([])
    rows = [(int(np.searchsorted(peak[order], level)) // side, f"{level:g}") for level in (0.1, 1, 10)]
    ax_emb.set_yticks([r for r, _ in rows], [t for _, t in rows], fontsize=8)
    ax_emb.set_ylabel("peaks at σ ≈", fontsize=8, labelpad=1)
    ax_emb.set_title(f"embedding: {emb.shape[1]} numbers,\nby the σ where each peaks", fontsize=9)
    fig.colorbar(square, ax=ax_emb, shrink=0.8)

    def update(i):
        ax_img.images[0].set_data(_noisy(x0, sigmas[i], eps)[0].numpy())
        dot.set_data([point[i, 0]], [point[i, 1]])
        square.set_data(_embedding_square(emb[i]))

    return animate(fig, update, [f"σ = {s:.3g}" for s in sigmas], default=default, caption=caption)
