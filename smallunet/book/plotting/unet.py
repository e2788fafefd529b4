"""Figures and tables for the chapter on the whole U-Net: the skip stack recorded
with hooks, what each skip carries, where parameters and FLOPs go, and the model's
prediction across noise levels (sliders over precomputed frames)."""
from __future__ import annotations

import html
from typing import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from .common import figure, new_figure, show_image

RES_COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3"]   # one per resolution level


def html_table(rows: Sequence[dict], columns: dict[str, str]) -> str:
    """An HTML table of ``rows`` (dicts), with ``columns`` mapping key -> header; show it
    with ``IPython.display.HTML``. Ints get thousands separators, bools become yes/no,
    None a dash, lists are joined with commas."""
    def cell(v):
        if v is None:
            return "–"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, int):
            return f"{v:,}"
        if isinstance(v, (list, tuple)):
            return ", ".join(map(str, v))
        return str(v)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in columns.values())
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(r.get(k)))}</td>" for k in columns) + "</tr>"
                   for r in rows)
    # the wrapper scrolls a wide table inside the page's column instead of cutting it off
    return (f'<div style="overflow-x:auto; max-width:100%"><table class="table" style="font-size:0.85em">'
            f'<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')


def _shape(shape: tuple) -> str:
    return "x".join(map(str, shape[1:]))                 # (B, C, H, W) -> "CxHxW"


def short_name(module: str) -> str:
    """'downs.0.blocks.1' -> 'd0.b1', 'downs.0.downsample' -> 'd0.ds', 'ups.2.blocks.0' -> 'u2.b0'."""
    parts = module.split(".")
    if len(parts) < 3:
        return module
    last = "ds" if parts[2] == "downsample" else "us" if parts[2] == "upsample" else f"b{parts[3]}"
    return f"{parts[0][0]}{parts[1]}.{last}"


def plot_skip_stack(trace) -> Figure:
    """The skip stack over one forward pass, from ``smallunet.book.anatomy.skip_trace``.

    x is time (the order of the events), y the slot of the stack. Each tensor pushed
    is a bar in its slot from the push (left, with the module that made it) to the pop
    (right, with the block that concatenates it onto h). Colour is resolution; the
    dotted line is the path of the data, down and back up."""
    pushes = [e for e in trace if e.kind == "push"]
    pops = {e.partner: e for e in trace if e.kind == "pop"}
    res = sorted({e.shape[-1] for e in pushes}, reverse=True)
    gap = 2                                              # room for the middle blocks

    def x(e):
        return e.step + (gap if e.kind == "pop" else 0)

    fig = figure(6.7, 0.42 * len(pushes) + 1.3)
    ax = fig.subplots()
    for slot, e in enumerate(pushes):
        p = pops[e.step]
        color = RES_COLORS[res.index(e.shape[-1]) % len(RES_COLORS)]
        ax.barh(-slot, x(p) - x(e), left=x(e), height=0.62, color=color, alpha=0.85, zorder=2)
        ax.text(x(e) - 0.15, -slot, short_name(e.module), ha="right", va="center", fontsize=8)
        ax.text(x(p) + 0.15, -slot, f"{short_name(p.module)} (h {_shape(p.h_shape)})", ha="left",
                va="center", fontsize=8)
        ax.text((x(e) + x(p)) / 2, -slot, _shape(e.shape), ha="center", va="center",
                fontsize=8, color="white", fontweight="bold")
    path = [(x(e), -(e.depth - 1) if e.kind == "push" else -e.depth) for e in trace]
    ax.plot(*zip(*path), color="0.3", lw=1, ls=":", marker="o", ms=3, zorder=1)
    mid = len(pushes) - 1 + (gap + 1) / 2
    ax.text(mid, -len(pushes) + 0.35, "mid", ha="center", va="top", fontsize=9, color="0.3")
    for i, r in enumerate(res):
        ax.barh(np.nan, 0, color=RES_COLORS[i % len(RES_COLORS)], label=f"{r}x{r}")
    ax.legend(title="resolution", fontsize=8, loc="lower left")
    ax.set_xlim(-2.6, x(trace[-1]) + 5.2)
    ax.set_ylim(-len(pushes) - 0.4, 0.8)
    ax.set_yticks(-np.arange(len(pushes)), [f"slot {i}" for i in range(len(pushes))], fontsize=8)
    ax.set_xticks([x(e) for e in trace], [str(e.step) for e in trace], fontsize=8)
    ax.set_xlabel("event number (C x H x W of the skip on each bar; h: the input it joins)",
                  fontsize=9)
    ax.set_title(f"the skip stack: {len(pushes)} pushes on the way down, {len(pops)} pops on the way up",
                 fontsize=10)
    return fig


def plot_skip_ablation(x0: torch.Tensor, xt: torch.Tensor, full: torch.Tensor,
                       ablated: dict[str, torch.Tensor], n_images: int = 2, ncols: int = 6) -> Figure:
    """x0 estimates with each skip zeroed in turn, ``ncols`` panels to a row and as many
    rows per image as it takes.

    Args:
        x0, xt, full: (B, 1, H, W) clean images, noisy inputs, the full model's x0 estimate.
        ablated: label -> (B, 1, H, W) the x0 estimate with that skip zeroed.
        n_images: how many of the B images to show."""
    cols = [("clean x0", x0), ("noisy input", xt), ("full model", full)] + list(ablated.items())
    per_image = -(-len(cols) // ncols)                       # rows per image, rounded up
    fig, axes = new_figure(n_images * per_image, ncols, size=(1.1, 1.25))
    for i in range(n_images):
        for j in range(per_image * ncols):
            ax = axes[i * per_image + j // ncols, j % ncols]
            if j < len(cols):
                title, imgs = cols[j]
                show_image(ax, imgs[i].clamp(-1, 1), title=title, fontsize=8)
            else:
                ax.axis("off")
    return fig


def plot_skip_mse(labels: Sequence[str], mse: Sequence[float], base: float,
                  resolutions: Sequence[int]) -> Figure:
    """Bar chart: the x0 estimate's MSE with each skip zeroed, against the full model's."""
    res = sorted(set(resolutions), reverse=True)
    fig = figure(6.6, 3.2)
    ax = fig.subplots()
    colors = [RES_COLORS[res.index(r) % len(RES_COLORS)] for r in resolutions]
    ax.bar(range(len(mse)), mse, color=colors)
    ax.axhline(base, color="k", ls="--", lw=1, label=f"full model: {base:.4f}")
    ax.set_xticks(range(len(mse)), labels, rotation=40, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("MSE of the x0 estimate")
    for i, r in enumerate(res):
        ax.bar(0, np.nan, color=RES_COLORS[i % len(RES_COLORS)], label=f"skip at {r}x{r}")
    ax.legend(fontsize=8)
    ax.set_title("zeroing one skip (labelled by the module that pushed it)", fontsize=10)
    return fig


def plot_stage_costs(rows: Sequence[dict], flops: dict[str, int]) -> Figure:
    """Two bar charts over the stages: parameters and FLOPs of one forward pass."""
    names = [r["stage"] for r in rows]
    fig, axes = new_figure(1, 2, size=(3.35, 0.32 * len(names) + 1.0))
    for ax, vals, label in ((axes[0, 0], [r["params"] / 1e6 for r in rows], "parameters (millions)"),
                            (axes[0, 1], [flops[n] / 1e6 for n in names], "MFLOPs, one 28x28 image")):
        colors = ["#4C72B0" if n.startswith("downs") else "#C44E52" if n.startswith("ups")
                  else "#55A868" if n == "mid" else "0.6" for n in names]
        ax.barh(range(len(names)), vals, color=colors)
        ax.set_yticks(range(len(names)), [f"{n} ({r['resolution']})" if r["resolution"] else n
                                          for n, r in zip(names, rows)], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(label)
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.2f}", va="center", fontsize=7)
        ax.set_xlim(0, max(vals) * 1.3)
    return fig


def plot_sigma_sweep(x0: torch.Tensor, model_in: torch.Tensor, eps_hat: torch.Tensor,
                     x0_hat: torch.Tensor, sigmas: Sequence[float]) -> Figure:
    """The model's prediction for one image at several noise levels (columns).

    Rows: what the network sees (sqrt(alpha) * x_t), its noise prediction eps_hat, and the
    x0 estimate x_t - sigma * eps_hat, whose error against x0 is in each title.
    Args: (S, 1, H, W) tensors, one example per sigma; x0: (1, H, W)."""
    fig, axes = new_figure(3, len(sigmas), size=(1.1, 1.25))
    for j, s in enumerate(sigmas):
        err = ((x0_hat[j] - x0) ** 2).mean().item()
        show_image(axes[0, j], model_in[j], title=f"sigma = {s:g}", vmin=-2.5, vmax=2.5)
        show_image(axes[1, j], eps_hat[j], vmin=-2.5, vmax=2.5)
        show_image(axes[2, j], x0_hat[j].clamp(-1, 1), title=f"MSE {err:.3f}", fontsize=8)
    for i, label in enumerate(["network input", "eps_hat", "x0_hat"]):
        axes[i, 0].set_ylabel(label, fontsize=9)
    return fig


def skip_frames(model_in: torch.Tensor, feats: dict[str, torch.Tensor], sigmas: Sequence[float],
                channels: int = 2, **kwargs):
    """The skip stack across sigma, one frame per noise level (no kernel needed).

    Columns: the network input, then every tensor pushed (``skip_features``). Rows: the
    RMS over its channels, then (channel #1, #2, ...) its ``channels`` channels with the
    largest spread (std over all frames and positions). Each panel keeps one colour scale
    over the frames (clipped at the 0.5th and 99.5th percentiles).
    Args: model_in (S, 1, H, W) and feats name -> (S, C, h, w), example i at sigmas[i]."""
    from .interactive import image_frames

    names = list(feats)
    picks = {n: f.transpose(0, 1).flatten(1).std(1).argsort(descending=True)[:channels].tolist()
             for n, f in feats.items()}
    frames = []
    for i in range(len(sigmas)):
        rms = [model_in[i]] + [f[i].pow(2).mean(0).sqrt() for f in feats.values()]
        picked = [[None] + [feats[n][i, picks[n][k]] for n in names] for k in range(channels)]
        frames.append([rms] + picked)
    titles = ["network\ninput"] + [f"{short_name(n)}\n{_shape(f.shape)}" for n, f in feats.items()]
    rows = ["RMS"] + [f"channel #{k + 1}" for k in range(channels)]
    return image_frames(frames, [f"sigma = {s:.3g}" for s in sigmas], row_labels=rows, col_titles=titles,
                        cmap={(r, c): "viridis" if r else "magma" for r in range(channels + 1)
                              for c in range(1, len(names) + 1)},
                        scale="panel", percentile=99.5, horizontal_labels=True,
                        panel=0.75, **kwargs)


def sigma_sweep_frames(x0: torch.Tensor, model_in: torch.Tensor, eps_hat: torch.Tensor,
                       x0_hat: torch.Tensor, sigmas: Sequence[float], **kwargs):
    """``plot_sigma_sweep`` behind a slider, one frame per sigma (no kernel needed):
    the clean image, what the network sees, its eps_hat and the x0 estimate (with its MSE).
    Args: (S, 1, H, W) tensors, example i at sigmas[i]; x0: (1, H, W)."""
    from .interactive import image_frames

    frames = [[[x0, model_in[i], eps_hat[i], x0_hat[i].clamp(-1, 1)]] for i in range(len(sigmas))]
    labels = [f"sigma = {s:.3g}: MSE of x0_hat {((x0_hat[i] - x0) ** 2).mean():.4f}"
              for i, s in enumerate(sigmas)]
    return image_frames(frames, labels, col_titles=["clean x0", "network input", "eps_hat", "x0_hat"],
                        scale="panel", vlims={(0, 0): (-1, 1), (0, 1): (-2.5, 2.5), (0, 2): (-2.5, 2.5),
                                              (0, 3): (-1, 1)}, panel=1.3, **kwargs)
