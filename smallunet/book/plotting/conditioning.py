"""Figures for the chapter Conditioning: samples per class, the fidelity-quality
trade-off against the guidance scale, nearest training neighbours, and a kernel-free
slider over the guidance scale.

Every plotting function returns a matplotlib Figure and never calls ``plt.show()``;
``guidance_frames`` returns a kernel-free interactive figure (IPython HTML, see
``interactive``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from matplotlib.figure import Figure

from ...data import CLASS_NAMES
from .common import new_figure, show_image
from .interactive import image_frames

__all__ = ["plot_class_grid", "plot_guidance_tradeoff", "plot_neighbours", "guidance_frames",
           "plot_embedding_similarity"]


def plot_class_grid(images: torch.Tensor, labels: torch.Tensor, per_class: int, size: float = 0.62,
                    title: str | None = None) -> Figure:
    """One row per class (named on the left), ``per_class`` samples of it per row."""
    classes = sorted(set(labels.tolist()))
    fig, axes = new_figure(len(classes), per_class, size=(size, size))
    for r, c in enumerate(classes):
        mine = images[labels == c][:per_class]
        for k in range(per_class):
            ax = axes[r, k]
            if k < len(mine):
                show_image(ax, mine[k].clamp(-1, 1))
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(CLASS_NAMES[c], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def plot_guidance_tradeoff(sweep: Mapping, floor: Mapping | None = None) -> Figure:
    """Left: the share of samples classified as the class asked for (all classes, and the
    worst class) against the guidance scale, with the 90 % / 80 % targets and what real
    images score. Right: the FID-like score, pooled and per class (mean), with their
    floors. ``sweep``: ``guidance_sweep``'s result or bench/guidance.json (which holds its
    floor, as does ``floor``)."""
    floor = floor or sweep.get("floor")
    res = sweep["results"]
    s = [r["cfg_scale"] for r in res]
    fig, axes = new_figure(1, 2, size=(3.3, 2.9))
    ax = axes[0, 0]
    ax.plot(s, [100 * r["accuracy"] for r in res], "o-", label="all classes")
    ax.plot(s, [100 * r["min_class_accuracy"] for r in res], "s--", label="worst class")
    ax.axhline(90, color="k", lw=0.8, ls=":")
    ax.axhline(80, color="k", lw=0.8, ls=":")
    if floor:
        ax.axhline(100 * floor["accuracy"], color="tab:green", lw=1, label="real images, all")
        ax.axhline(100 * floor["min_class_accuracy"], color="tab:green", lw=1, ls="--", label="real images, worst")
    ax.set(xlabel="guidance scale s", ylabel="classified as asked (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    ax.plot(s, [r["fid"] for r in res], "o-", label="pooled (all test images)")
    ax.plot(s, [r["fid_class_mean"] for r in res], "s--", label="per class (mean)")
    if floor:
        ax.axhline(floor["fid"], color="tab:blue", lw=1, ls=":", label="floor, pooled")
        ax.axhline(floor["fid_class_mean"], color="tab:orange", lw=1, ls=":", label="floor, per class")
    ax.set(xlabel="guidance scale s", ylabel="FID-like score")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    rec = sweep.get("recommended_cfg_scale")
    if rec is not None:
        for a in axes[0]:
            a.axvline(rec, color="tab:red", lw=1, alpha=0.5)
    return fig


def plot_neighbours(samples: torch.Tensor, neighbours: torch.Tensor, dists: torch.Tensor,
                    size: float = 0.8) -> Figure:
    """Samples (top row) above their nearest training images (bottom row, with the RMS
    pixel distance)."""
    n = len(samples)
    fig, axes = new_figure(2, n, size=(size, size + 0.15))
    for k in range(n):
        show_image(axes[0, k], samples[k].clamp(-1, 1))
        show_image(axes[1, k], neighbours[k], title=f"{float(dists[k]):.2f}", fontsize=7)
    axes[0, 0].set_ylabel("sample", fontsize=8)
    axes[1, 0].set_ylabel("nearest\ntraining", fontsize=8)
    return fig


def plot_embedding_similarity(emb: torch.Tensor, names: Sequence[str]) -> Figure:
    """Cosine similarity between the label embeddings (K, D) of the classes (and null)."""
    e = torch.nn.functional.normalize(emb.float(), dim=1)
    sim = (e @ e.T).numpy()
    fig, axes = new_figure(1, 1, size=(4.4, 3.8))
    ax = axes[0, 0]
    im = ax.imshow(sim, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    fig.colorbar(im, ax=ax, shrink=0.8, label="cosine similarity")
    return fig


def guidance_frames(images_by_scale: Mapping[float, torch.Tensor], labels: torch.Tensor, per_class: int,
                    default: int = 0, panel: float = 0.83, **kwargs):
    """A slider over the guidance scale: each frame one column per class, ``per_class``
    samples of it down the column, the same starting noise in every frame
    (``images_by_scale``: {scale: (N, 1, H, W)} with the classes of ``labels``). At the
    default 80 dpi a ``panel`` of 0.83 in draws each sample at 56 px or more (a smaller
    one is refused)."""
    scales = list(images_by_scale)
    classes = sorted(set(labels.tolist()))
    frames = []
    for s in scales:
        x = images_by_scale[s].clamp(-1, 1)
        frames.append([[x[labels == c][k] for c in classes] for k in range(per_class)])
    names = [CLASS_NAMES[c].replace("/", "/\n").replace(" ", "\n") for c in classes]
    return image_frames(frames, [f"guidance scale s = {s:g}" for s in scales], col_titles=names,
                        vlims=[(-1, 1)] * per_class, panel=panel, default=default, min_panel_px=56, **kwargs)
