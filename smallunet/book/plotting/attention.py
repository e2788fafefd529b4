"""Figures for the chapter on attention: where a query pixel of the trained U-Net
looks, in each AttnBlock and at each noise level; a slider over precomputed query
pixels for the static book, and a widget (with a running kernel) to pick any pixel.

Attention maps come from ``smallunet.book.anatomy.attention_maps``: a dict from the
block's name to weights (B, heads, N, N) over a square grid of N = R * R tokens.
Query pixels are given in the coordinates of the input image (row, col); a block at
R x R sees pixel (row, col) as token (row * R // size, col * R // size).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from matplotlib import colors
from matplotlib.figure import Figure

from .common import hide_ticks, new_figure, show_image


def block_label(name: str) -> str:
    """'downs.1.blocks.0.1' -> 'down 1.0', 'mid.1' -> 'mid', 'ups.1.blocks.2.1' -> 'up 1.2'."""
    parts = name.split(".")
    if parts[0] == "mid":
        return "mid"
    return f"{parts[0][:-1]} {parts[1]}.{parts[3]}"


def query_row(attn: torch.Tensor, query: tuple[int, int], size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The weights that one query pixel gives to every token, averaged over heads.

    Args:
        attn: (heads, N, N) weights of one image.
        query: (row, col) in an image of ``size`` x ``size`` pixels.
    Returns the (R, R) map and the query's cell (row, col) in the block's grid."""
    n = attn.shape[-1]
    side = round(n ** 0.5)
    r, c = query[0] * side // size, query[1] * side // size
    row = attn[:, r * side + c].mean(0).reshape(side, side)
    return row.detach().to("cpu", torch.float32).numpy(), (r, c)


def _draw(ax, image, weights: np.ndarray, cell: tuple[int, int], size: int, title: str | None):
    side = weights.shape[0]
    show_image(ax, image, vmin=-1, vmax=1)
    ax.imshow(weights, cmap="inferno", alpha=0.75, extent=(-0.5, size - 0.5, size - 0.5, -0.5),
              vmin=0, vmax=weights.max(), interpolation="nearest")
    scale = size / side
    ax.plot((cell[1] + 0.5) * scale - 0.5, (cell[0] + 0.5) * scale - 0.5, marker="+", color="cyan",
            markersize=9, markeredgewidth=2)
    hide_ticks(ax)
    if title:
        ax.set_title(title, fontsize=8)


def plot_attention_query(clean: torch.Tensor, noisy: torch.Tensor, maps: dict[str, torch.Tensor],
                         sigmas: Sequence[float], query: tuple[int, int], panel: float = 0.95) -> Figure:
    """Where one query pixel looks: one row per noise level, one column per AttnBlock.

    Args:
        clean: (1, H, W) the clean image (drawn faintly under each map).
        noisy: (S, 1, H, W) the image at each of the S noise levels (first column).
        maps: block name -> (S, heads, N, N) attention weights; example i at sigmas[i].
        sigmas: the S noise levels.
        query: (row, col) of the query pixel in the image (cyan cross).
        panel: the width of one panel in inches (7 panels of 0.95 fit the book's column).
    Each panel's colours run from 0 to that panel's largest weight."""
    size = clean.shape[-1]
    names = list(maps)
    fig, axes = new_figure(len(sigmas), len(names) + 1, size=(panel, panel + 0.1))
    for i, s in enumerate(sigmas):
        show_image(axes[i, 0], noisy[i], title="model input" if i == 0 else None, fontsize=8)
        axes[i, 0].set_ylabel(f"sigma = {s:g}", fontsize=8)
        for j, name in enumerate(names):
            w, cell = query_row(maps[name][i], query, size)
            _draw(axes[i, j + 1], clean, w, cell, size,
                  f"{block_label(name)}\n{w.shape[0]}x{w.shape[0]}" if i == 0 else None)
    fig.suptitle(f"attention of the query pixel (row {query[0]}, col {query[1]}), cyan cross", fontsize=10)
    return fig


def plot_attention_queries(clean: torch.Tensor, maps: torch.Tensor, sigmas: Sequence[float],
                           queries: Sequence[tuple[int, int]], block: str = "") -> Figure:
    """One block's attention for several query pixels (rows) at several sigma (columns).

    Args:
        clean: (1, H, W) the clean image.
        maps: (S, heads, N, N) the block's weights, example i at sigmas[i].
        queries: (row, col) pixels of the image, one row of panels each."""
    size = clean.shape[-1]
    fig, axes = new_figure(len(queries), len(sigmas), size=(1.45, 1.5))
    for i, q in enumerate(queries):
        for j, s in enumerate(sigmas):
            w, cell = query_row(maps[j], q, size)
            _draw(axes[i, j], clean, w, cell, size, f"sigma = {s:g}" if i == 0 else None)
        axes[i, 0].set_ylabel(f"query {q}", fontsize=9)
    if block:
        fig.suptitle(f"{block_label(block)}: attention of several query pixels", fontsize=10)
    return fig


def uniform_spread(side: int, size: int = 28) -> dict[str, float]:
    """What attending evenly to all side x side tokens gives: the mean distance in
    pixels of the ``size`` x ``size`` input, and 100 % of the tokens."""
    from ..anatomy import attention_spread
    uniform = torch.full((1, 1, side * side, side * side), 1.0 / side ** 2)
    return dict(distance=float(attention_spread(uniform)["distance"].mean()) * size / side, tokens=100.0)


def plot_attention_spread(stats: dict[str, dict[str, torch.Tensor]], sigmas: Sequence[float],
                          size: int = 28) -> Figure:
    """Two heat maps, blocks x sigma: how far queries look on average (in pixels of
    the ``size`` x ``size`` input) and over what share of the N tokens they spread their
    weight, with a last row per grid size for uniform attention (the baseline). Each
    panel has one colour scale for all its rows, from 0 to the largest value.

    Args:
        stats: block name -> {"distance": (S,), "tokens": (S,), "side": R} averaged over
            queries and images, distance in grid cells of the block."""
    names = list(stats)
    sides = sorted({stats[n]["side"] for n in names}, reverse=True)
    fig, axes = new_figure(1, 2, size=(3.25, 0.45 * (len(names) + len(sides)) + 1.2))
    for ax, key, label in ((axes[0, 0], "distance", "mean distance (input pixels)"),
                           (axes[0, 1], "tokens", "effective tokens, exp(entropy), % of N")):
        vals = np.array([[float(v) for v in stats[n][key]] for n in names])
        side = np.array([[stats[n]["side"]] for n in names])
        vals = vals * size / side if key == "distance" else 100 * vals / side ** 2
        base = np.array([[uniform_spread(r, size)[key]] * len(sigmas) for r in sides])
        vals = np.vstack([vals, base])
        im = ax.imshow(vals, cmap="viridis", aspect="auto", vmin=0, vmax=vals.max())
        for (r, c), v in np.ndenumerate(vals):        # distances to 0.1 px, shares to 1 %
            text = f"{v:.1f}" if key == "distance" else f"{v:.0f}"
            ax.text(c, r, text, ha="center", va="center", fontsize=8,
                    color="white" if v < 0.6 * vals.max() else "black")
        ax.axhline(len(names) - 0.5, color="white", lw=2)
        ax.set_xticks(range(len(sigmas)), [f"{s:g}" for s in sigmas])
        ax.set_yticks(range(len(names) + len(sides)),        # row labels on the left panel only
                      [f"{block_label(n)} ({stats[n]['side']}x{stats[n]['side']})" for n in names]
                      + [f"uniform ({r}x{r})" for r in sides] if key == "distance" else [])
        ax.set_xlabel("sigma")
        ax.set_title(label, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def attention_query_frames(clean: torch.Tensor, noisy: torch.Tensor, maps: dict[str, torch.Tensor],
                           sigmas: Sequence[float], queries: Sequence[tuple[int, int]], *,
                           default: int = 0, caption: str | None = None, panel: float = 0.95):
    """``plot_attention_query`` behind a slider over query pixels, one frame per query
    (no kernel needed). Each panel (noise level x block) keeps one colour scale over all
    frames, from 0 to its largest weight for any of the queries, on a square-root scale
    so that weak weights stay visible. Returns IPython HTML."""
    from .interactive import animate

    size = clean.shape[-1]
    names = list(maps)
    rows = [[[query_row(maps[n][i], q, size) for n in names] for i in range(len(sigmas))] for q in queries]
    fig, axes = new_figure(len(sigmas), len(names) + 1, size=(panel, panel + 0.1))
    heat, cross = {}, {}
    for i, s in enumerate(sigmas):
        show_image(axes[i, 0], noisy[i], title="model input" if i == 0 else None, fontsize=8)
        axes[i, 0].set_ylabel(f"sigma = {s:g}", fontsize=8)
        cross[i, 0], = axes[i, 0].plot([], [], marker="+", color="cyan", markersize=8, markeredgewidth=2)
        for j, name in enumerate(names):
            vmax = max(float(r[i][j][0].max()) for r in rows)
            w, cell = rows[default][i][j]
            _draw(axes[i, j + 1], clean, w, cell, size,
                  f"{block_label(name)}\n{w.shape[0]}x{w.shape[0]}" if i == 0 else None)
            heat[i, j] = axes[i, j + 1].images[-1]
            heat[i, j].set_norm(colors.PowerNorm(0.5, vmin=0, vmax=vmax))
            cross[i, j + 1] = axes[i, j + 1].lines[-1]

    def update(k):
        q = queries[k]
        for i in range(len(sigmas)):
            cross[i, 0].set_data([q[1]], [q[0]])
            for j, name in enumerate(names):
                w, cell = rows[k][i][j]
                heat[i, j].set_data(w)
                scale = size / w.shape[0]
                cross[i, j + 1].set_data([(cell[1] + 0.5) * scale - 0.5], [(cell[0] + 0.5) * scale - 0.5])

    return animate(fig, update, [f"query pixel (row {q[0]}, col {q[1]}), cyan cross" for q in queries],
                   default=default, caption=caption)


def attention_explorer(clean: torch.Tensor, noisy: torch.Tensor, maps: dict[str, torch.Tensor],
                       sigmas: Sequence[float], query: tuple[int, int] = (14, 14)):
    """Sliders for the query pixel's row and column, redrawing ``plot_attention_query``.
    Needs ipywidgets and a running kernel (the rendered book shows the first figure)."""
    import ipywidgets as widgets
    from IPython.display import display

    size = clean.shape[-1]
    row = widgets.IntSlider(value=query[0], min=0, max=size - 1, description="row")
    col = widgets.IntSlider(value=query[1], min=0, max=size - 1, description="col")

    def show(row, col):
        display(plot_attention_query(clean, noisy, maps, sigmas, (row, col)))

    out = widgets.interactive_output(show, dict(row=row, col=col))
    return widgets.VBox([widgets.HBox([row, col]), out])
