"""Figures for the chapter Training: noise levels, what Scaled does to the input's
size, the noise schedule, the EMA's warm-up, the loss curve and side-by-side samples.

Every function returns a matplotlib Figure and never calls ``plt.show()``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from .common import new_figure, show_image

__all__ = ["noise_levels", "std_vs_sigma", "sigma_distribution", "ema_weights", "loss_curve",
           "samples_side_by_side", "recipe_curves", "loss_vs_sigma", "segment_curves", "recipe_study",
           "gaussian_denoiser"]


def noise_levels(x0: torch.Tensor, sigmas: Sequence[float], eps: torch.Tensor | None = None,
                 rows: Sequence[str] = ("raw", "scaled"), row_titles: Sequence[str] | None = None,
                 seed: int = 0, show_std: bool = True, panel: float = 1.35) -> Figure:
    """Images at several noise levels (columns), the one noise-level figure of the book.

    x0: one image (C, H, W) or several (B, C, H, W). For each image, one row per entry of
    ``rows``: "raw" is x0 + sigma * eps drawn on the image range [-1, 1] (large values
    saturate); "scaled" is the same divided by sqrt(1 + sigma^2), as Scaled feeds it to
    the network. eps: the noise (default drawn with ``seed``). row_titles: one label per
    image. show_std: put each panel's standard deviation in its title. panel: the width
    of one panel in inches (7 panels of 0.9 fit the book's column)."""
    x0 = x0[None] if x0.dim() == 3 else x0                       # (B, C, H, W)
    for r in rows:
        if r not in ("raw", "scaled"):
            raise ValueError(f"rows must hold 'raw' and/or 'scaled', got {r!r}")
    if eps is None:
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    eps = eps.reshape(x0.shape)
    fig, axes = new_figure(len(x0) * len(rows), len(sigmas),
                           size=(panel, panel * (1.5 if show_std else 1.35) / 1.35))
    for j, s in enumerate(sigmas):
        xt = x0 + s * eps
        panels = {"raw": (xt, (-1, 1)), "scaled": (xt / (1 + s ** 2) ** 0.5, (-1.5, 1.5))}
        for i in range(len(x0)):
            for k, r in enumerate(rows):
                img, (lo, hi) = panels[r]
                row = i * len(rows) + k
                title = f"σ = {s:g}" if row == 0 else ""
                if show_std:
                    title = (title + "\n" if title else "") + f"std {img[i].std():.2f}"
                show_image(axes[row, j], img[i], title=title or None, vmin=lo, vmax=hi)
    labels = {"raw": "x0 + σ·eps", "scaled": "Scaled input"}
    for i in range(len(x0)):
        for k, r in enumerate(rows):
            name = row_titles[i] if row_titles is not None and len(rows) == 1 else labels[r]
            axes[i * len(rows) + k, 0].set_ylabel(name, fontsize=9)
    return fig


def std_vs_sigma(sigmas, std_raw, std_scaled, std_x0: float) -> Figure:
    """Measured standard deviation of x0 + sigma * eps before and after Scaled's
    factor, against sigma (log-log), with the prediction sqrt(std_x0^2 + sigma^2)."""
    sigmas, std_raw, std_scaled = (np.asarray(a, dtype=float) for a in (sigmas, std_raw, std_scaled))
    fig, axes = new_figure(1, 1, size=(5.5, 3.4))
    ax = axes[0, 0]
    grid = np.logspace(np.log10(sigmas.min()), np.log10(sigmas.max()), 200)
    ax.plot(grid, np.sqrt(std_x0 ** 2 + grid ** 2), color="0.6", lw=3, label="√(std(x0)² + σ²)")
    ax.plot(sigmas, std_raw, "o", color="C0", label="std of x0 + σ·eps (measured)")
    ax.plot(sigmas, std_scaled, "s", color="C1", label="after Scaled: ÷ √(1 + σ²)")
    ax.set(xscale="log", yscale="log", xlabel="σ", ylabel="standard deviation")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def sigma_distribution(drawn: Mapping[str, torch.Tensor], bins: int = 40) -> Figure:
    """Histograms of log10(sigma) for noise levels drawn during training, one per schedule."""
    fig, axes = new_figure(1, 1, size=(5.5, 3.0))
    ax = axes[0, 0]
    all_logs = np.concatenate([np.log10(np.asarray(v, dtype=float)) for v in drawn.values()])
    edges = np.linspace(all_logs.min(), all_logs.max(), bins + 1)
    for name, values in drawn.items():
        ax.hist(np.log10(np.asarray(values, dtype=float)), bins=edges, alpha=0.55, label=name)
    ax.axvline(0, color="k", lw=0.8, ls="--")
    ax.text(0.04, 0.04, "σ = 1", transform=ax.get_xaxis_transform(), fontsize=8, rotation=90, va="bottom")
    ax.set(xlabel="log10 σ", ylabel="draws")
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    return fig


def ema_weights(steps, decay_warm, weight_fixed, weight_warm, decay: float) -> Figure:
    """Left: the EMA decay used at each update, with and without warm-up. Right: the
    weight that the initial (random) weights still have in the average."""
    steps = np.asarray(steps)
    fig, axes = new_figure(1, 2, size=(3.2, 2.8))
    ax = axes[0, 0]
    ax.plot(steps, np.full(len(steps), decay), label=f"fixed {decay}")
    ax.plot(steps, decay_warm, label="with warm-up")
    ax.set(xscale="log", xlabel="update n", ylabel="decay d(n)", title="decay")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    ax.plot(steps, weight_fixed, label=f"fixed {decay}")
    ax.plot(steps, np.maximum(weight_warm, 1e-300), label="with warm-up")
    ax.set(xscale="log", yscale="log", ylim=(1e-6, 1.5), xlabel="update n", ylabel="weight of the init",
           title="what is left of the random init")
    ax.legend(fontsize=8)
    return fig


def loss_curve(history: Sequence[tuple[int, float]], title: str | None = None) -> Figure:
    """The training loss [(step, mean loss over the last log_every steps)] against step."""
    if len(history) == 0:
        raise ValueError("history is empty: the run was shorter than log_every steps")
    steps, losses = zip(*history)
    fig, axes = new_figure(1, 1, size=(5.5, 3.0))
    ax = axes[0, 0]
    ax.plot(steps, losses, marker="o", ms=3)
    ax.set(xlabel="step", ylabel="MSE loss (eps prediction)", yscale="log")
    ax.grid(True, which="both", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def samples_side_by_side(panels: Mapping[str, torch.Tensor], ncols: int = 4, size: float = 1.1) -> Figure:
    """Image grids next to each other, one per entry of ``panels`` ({title: (B, 1, H, W)})."""
    n = len(panels)
    counts = {len(v) for v in panels.values()}
    if len(counts) != 1:
        raise ValueError(f"every panel needs the same number of images, got {sorted(counts)}")
    b = counts.pop()
    nrows = -(-b // ncols)
    fig = new_figure(1, 1, size=(size * ncols * n + 0.3 * (n - 1), size * nrows + 0.4))[0]
    fig.clf()
    subfigs = fig.subfigures(1, n, wspace=0.04)
    for sub, (title, images) in zip(np.atleast_1d(subfigs), panels.items()):
        axes = sub.subplots(nrows, ncols, squeeze=False)
        for i, ax in enumerate(axes.flat):
            if i < b:
                show_image(ax, images[i])
            else:
                ax.axis("off")
        sub.suptitle(title, fontsize=10)
    return fig


def recipe_curves(lr_curves: Mapping[str, tuple], sigma_draws: Mapping[str, torch.Tensor],
                  weights: Mapping[str, tuple]) -> Figure:
    """Three panels of the recipe: the learning rate against the global step
    ({label: (steps, lr)}), the training noise levels drawn ({label: sigmas}, a histogram
    in log sigma) and the loss weight against sigma ({label: (sigmas, weight)})."""
    fig, axes = new_figure(1, 3, size=(2.2, 2.6))
    ax = axes[0, 0]
    for label, (steps, lr) in lr_curves.items():
        ax.plot(steps, lr, label=label)
    ax.set(xlabel="global step", ylabel="learning rate", title="learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax = axes[0, 1]
    bins = np.linspace(np.log10(0.01), np.log10(20), 41)
    for label, s in sigma_draws.items():
        ax.hist(np.log10(s.numpy()), bins=bins, histtype="step", density=True, label=label)
    ax.set(xlabel="log10 σ", ylabel="density", title="training σ")
    ax = axes[0, 2]
    for label, (sig, w) in weights.items():
        ax.plot(sig, w, label=label)
    ax.set(xscale="log", yscale="log", xlabel="σ", ylabel="weight of the ε-MSE", title="loss weight")
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def loss_vs_sigma(sigmas, losses: Mapping[str, Sequence[float]]) -> Figure:
    """The eps-MSE against sigma for each model ({label: losses}), log-log."""
    fig, axes = new_figure(1, 1, size=(5.0, 3.0))
    ax = axes[0, 0]
    for label, values in losses.items():
        ax.plot(sigmas, values, marker="o", ms=3, label=label)
    ax.set(xscale="log", yscale="log", xlabel="sigma", ylabel="eps-MSE (unweighted)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def segment_curves(segments: Sequence[Mapping], histories: Sequence[Sequence[tuple[int, float]]]) -> Figure:
    """The logged training loss of each segment of a run against the images seen, one
    colour per segment (the segments may weight the loss differently)."""
    fig, axes = new_figure(1, 1, size=(5.5, 3.0))
    ax = axes[0, 0]
    for seg, hist in zip(segments, histories):
        if not hist:
            continue
        start_images = seg["images_seen"] - seg["images"]
        steps, losses = zip(*hist)
        images = [start_images + (s - seg["start_step"]) * seg["batch_size"] for s in steps]
        ax.plot(images, losses, lw=1, label=f"segment {seg['segment']} ({seg.get('recipe', {}).get('loss_weight', 'none')} weight)")
    ax.set(xlabel="training images seen", ylabel="logged training loss", yscale="log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def recipe_study(study: Mapping) -> Figure:
    """The recipe study (``bench/recipe.json``): each arm's FID-like score (mean and
    spread over the sampling seeds) against the training images it saw in the same
    wall-clock budget, named beside its point; the floor at the same n dashed."""
    arms = study["arms"]
    if not arms:
        raise ValueError("the study has no arms to plot")
    fig, axes = new_figure(1, 1, size=(5.5, 3.4))
    ax = axes[0, 0]
    for name, a in arms.items():
        ax.errorbar(a["images"], a["fid_mean"], yerr=a["fid_std"], fmt="o", ms=4, capsize=2)
        ax.annotate(name, (a["images"], a["fid_mean"]), xytext=(4, 3), textcoords="offset points", fontsize=7)
    ax.axhline(study["floor"]["fid_mean"], ls="--", c="k", lw=1, label=f"floor at n={study['n']}")
    ax.set(xlabel=f"training images seen in {study['minutes_per_arm']:g} min", yscale="log",
           ylabel=f"FID-like (n={study['n']})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def gaussian_denoiser(xt, curves: Mapping[float, Mapping[str, Sequence[float]]],
                      coordinate: int = 0) -> Figure:
    """The toy of Gaussian data: against one coordinate of x_t (xt: (M,)), the
    posterior mean E[x0 | x_t] (left) and the score (right) at each sigma of ``curves``
    ({sigma: {"x0_exact", "x0_net", "score_exact", "score_net"}: (M,) each}), the
    closed form as a line and the trained network as dots."""
    xt = np.asarray(xt, dtype=float)
    fig, axes = new_figure(1, 2, size=(3.3, 2.7))
    for k, (sigma, c) in enumerate(curves.items()):
        color = f"C{k}"
        for ax, key in zip(axes[0], ("x0", "score")):
            ax.plot(xt, np.asarray(c[f"{key}_exact"]), color=color, lw=2.5, alpha=0.45,
                    label=f"σ = {sigma:g}")
            ax.plot(xt[::3], np.asarray(c[f"{key}_net"])[::3], "o", color=color, ms=2.5)
    i = coordinate + 1
    axes[0, 0].set(xlabel=f"x_t (coordinate {i})", ylabel=f"E[x0 | x_t] (coordinate {i})",
                   title="posterior mean")
    axes[0, 1].set(xlabel=f"x_t (coordinate {i})", ylabel=f"∇ log p_σ (coordinate {i})",
                   title="score = −ε̂/σ")
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("lines: closed form; dots: the trained network", fontsize=9)
    return fig


def branch_study(study: Mapping, summary: Mapping) -> Figure:
    """The branch study (``bench/branch_study.json``): left, each arm's learning rate
    (``lr_curve``: [(global step, lr), ...]) against the images it has seen since the shipped
    step (``(step - start_step) * batch_size``, so arms of different batch sizes line up); right, the FID-like score of
    the shipped model and of each arm: the EMA's score per sampling seed (dots) and their
    mean (a short line), the raw weights' (a cross), on an axis zoomed to the scores; the
    floor, where known, in the axis label."""
    arms = study["arms"]
    if not arms:
        raise ValueError("the study has no arms to plot")
    fig, axes = new_figure(1, 2, size=(3.4, 2.8))
    left, right = axes[0]
    for k, (name, a) in enumerate(arms.items()):
        steps, lrs = zip(*a["lr_curve"])
        seen = [(s - a["start_step"]) * a["batch_size"] / 1000 for s in steps]
        left.plot(seen, lrs, color=f"C{k + 1}", label=name)
    left.set(xlabel="images since the shipped step (1000s)", ylabel="learning rate", title="the arms' schedules")
    left.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    left.legend(fontsize=8)
    rows = summary["rows"]
    names = [n for n in ("shipped", *arms) if n in rows]
    for x, name in enumerate(names):
        r, color = rows[name], "C0" if name == "shipped" else f"C{list(arms).index(name) + 1}"
        right.plot([x - 0.25, x + 0.25], [r["ema_mean"]] * 2, color=color, lw=2,
                   label="EMA, mean of the seeds" if x == 0 else None)
        right.plot([x] * len(r["ema"]), r["ema"], "o", color=color, ms=4, alpha=0.7,
                   label="EMA, per seed" if x == 0 else None)
        if r.get("raw") is not None:
            labelled = any(t.get_label() == "raw weights, seed 0" for t in right.lines)
            right.plot(x, r["raw"], "x", color="k", ms=6, label=None if labelled else "raw weights, seed 0")
    right.set_xticks(range(len(names)), names, fontsize=8)
    right.set_xlim(-0.6, len(names) - 0.4)
    floor = f"; floor {study['floor']['fid_mean']:.2f}" if study.get("floor") else ""
    right.set(ylabel=f"FID-like (n={study['settings']['n']}{floor})", title="scores (lower is better)")
    right.grid(True, axis="y", alpha=0.3)
    if names:
        right.legend(fontsize=7)
    return fig
