"""Figures for the chapter Sampling: a denoising trajectory with the predicted x0
at every step, rows of samples per sampler, a sampler's error against its step size
(its order of accuracy), and FID against the number of steps.
The numbers behind them (``generate``, ``fid_vs_steps``) live in
``smallunet.protocol``, which ``scripts/fid_table.py`` also uses.

Every plotting function returns a matplotlib Figure and never calls ``plt.show()``;
the ``*_frames`` functions return kernel-free interactive figures (IPython HTML, see
``interactive``), and ``sampler_explorer`` a live widget for a running kernel.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from matplotlib.figure import Figure
from torch import nn

from ...device import model_device
from ...protocol import SAMPLERS, fid_vs_steps, generate, precision_context  # noqa: F401 (re-exported for the chapters)
from ...sampling import samples
from .common import new_figure, show_image

__all__ = ["SAMPLERS", "precision_context", "trajectory", "generate", "fid_vs_steps",
           "plot_sampler_rows", "plot_fid_vs_steps", "plot_convergence", "fid_markdown",
           "trajectory_frames", "sampler_frames", "sampler_explorer"]


@torch.no_grad()
def trajectory(model: nn.Module, sigmas: torch.Tensor, gam: float = 1.0, mu: float = 0.0,
               batchsize: int = 4, generator: torch.Generator | None = None):
    """Run ``samples`` and also ask the model, at every step, for its current guess of
    the clean image: x0_hat = xt - sigma * eps(xt, sigma).

    Returns (xts, x0_hats): lists of (B, C, H, W) CPU tensors; xts[0] is the starting
    noise and xts[i] the state after step i (len(sigmas) entries); x0_hats[i] is the
    guess made from xts[i] at sigmas[i] (len(sigmas) - 1 entries)."""
    device = model_device(model)
    xt = model.rand_input(batchsize, generator=generator).to(device) * sigmas[0].item()
    xts, x0_hats = [xt.cpu()], []
    for i, x in enumerate(samples(model, sigmas, gam=gam, mu=mu, xt=xt.clone(), generator=generator)):
        sig = sigmas[i].to(device)
        x0_hats.append((xts[-1].to(device) - sig * model.predict_eps(xts[-1].to(device), sig)).cpu())
        xts.append(x.cpu())
    return xts, x0_hats


def fid_markdown(results: Mapping[str, Mapping[int, float]], floor: float | None = None,
                 samplers: Mapping[str, tuple[float, float]] = SAMPLERS,
                 spread: Mapping[str, Mapping[int, float]] | None = None,
                 floor_spread: float | None = None) -> str:
    """A markdown table: one row per sampler (labelled with its (gam, mu) from
    ``samplers``), one column per number of steps, and the floor as the last row;
    with ``spread`` (same layout: a standard deviation over seeds) each cell is mean ± std."""
    steps = sorted({k for r in results.values() for k in r})
    lines = ["| sampler (gam, mu) | " + " | ".join(f"{k} steps" for k in steps) + " |",
             "|---|" + "---:|" * len(steps)]
    for name, r in results.items():
        gm = samplers.get(name)
        label = f"{name} {gm}" if gm else name
        cell = (lambda k: f"{r[k]:.2f}" + (f" ± {spread[name][k]:.2f}" if spread else ""))
        lines.append(f"| {label} | " + " | ".join(cell(k) if k in r else "" for k in steps) + " |")
    if floor is not None:
        f = f"{floor:.2f}" + (f" ± {floor_spread:.2f}" if floor_spread is not None else "")
        lines.append("| real vs real (floor) | " + " | ".join(f for _ in steps) + " |")
    return "\n".join(lines)


def plot_sampler_rows(rows: Mapping[str, torch.Tensor], size: float = 1.0) -> Figure:
    """One row of images per entry of ``rows`` ({label: (B, 1, H, W)}), label at the left."""
    b = max(len(v) for v in rows.values())
    fig, axes = new_figure(len(rows), b, size=(size, size))
    for r, (label, images) in enumerate(rows.items()):
        for j in range(b):
            if j < len(images):
                show_image(axes[r, j], images[j].clamp(-1, 1))
            else:
                axes[r, j].axis("off")
        axes[r, 0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
    return fig


def plot_fid_vs_steps(results: Mapping[str, Mapping[int, float]], floor: float | None = None,
                      n: int | None = None, spread: Mapping[str, Mapping[int, float]] | None = None) -> Figure:
    """FID against the number of sampling steps, one line per sampler (with error bars
    of ``spread``, a standard deviation over seeds, when given), and the
    real-versus-real floor at the same sample count as a dashed line."""
    from matplotlib.ticker import FixedLocator, NullLocator
    fig, axes = new_figure(1, 1, size=(5.5, 3.4))
    ax = axes[0, 0]
    for name, r in results.items():
        ks = sorted(r)
        err = [spread[name][k] for k in ks] if spread else None
        ax.errorbar(ks, [r[k] for k in ks], yerr=err, marker="o", capsize=3, label=name)
    if floor is not None:
        ax.axhline(floor, color="k", ls="--", lw=1, label="real vs real (floor)")
    ax.set(xscale="log", xlabel="sampling steps", ylabel="FID (our classifier's features)")
    ax.set_ylim(bottom=0)
    ks = sorted({k for r in results.values() for k in r})
    ax.xaxis.set_major_locator(FixedLocator(ks))          # one labelled tick per step count
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(k) for k in ks])
    ax.grid(True, alpha=0.3)
    if n is not None:
        ax.set_title(f"{n} samples per point", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def plot_convergence(h: Sequence[float], errors: Mapping[str, Sequence[float]],
                     slopes: Mapping[str, float] | None = None,
                     xlabel: str = "step size h (the step in ln sigma)",
                     ylabel: str = "largest error at sigma_min") -> Figure:
    """A sampler's error at the end of a run against its step size ``h``, on log-log
    axes, one line per entry of ``errors`` ({label: one error per h}); with ``slopes``
    ({label: fitted slope}, the order of accuracy) the legend gives each line's slope."""
    fig, axes = new_figure(1, 1, size=(5.5, 3.4))
    ax = axes[0, 0]
    for name, err in errors.items():
        if len(err) != len(h):
            raise ValueError(f"errors[{name!r}] must have one value per h ({len(h)}), got {len(err)}")
        label = name if slopes is None else f"{name}: slope {slopes[name]:.2f}"
        ax.plot(h, err, marker="o", label=label)
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def trajectory_frames(xts, x0_hats, sigmas, n: int | None = None, **kwargs):
    """The denoising trajectory behind a slider, one frame per sampling step (no kernel
    needed): x_t before the step (top row) and the model's guess of x0 made from it
    (bottom row) for ``n`` samples side by side. The last frame shows the final samples
    on top and, below them, the guess of the last step that made them (no empty panels).
    Args: ``trajectory``'s output and the sigmas it ran on; kwargs go to ``image_frames``."""
    from .interactive import image_frames

    n_steps = len(x0_hats)
    n = xts[0].shape[0] if n is None else n
    frames = [[[xts[i][s].clamp(-1, 1) for s in range(n)], [x0_hats[i][s].clamp(-1, 1) for s in range(n)]]
              for i in range(n_steps)]
    frames.append([[xts[-1][s].clamp(-1, 1) for s in range(n)], [x0_hats[-1][s].clamp(-1, 1) for s in range(n)]])
    labels = [f"step {i + 1} of {n_steps}: x_t at sigma = {float(sigmas[i]):.3g}" for i in range(n_steps)]
    labels.append(f"after step {n_steps}: the final samples (sigma = {float(sigmas[-1]):.3g})\n"
                  f"below them, step {n_steps}'s x0 guess again")
    return image_frames(frames, labels, row_labels=["x_t", "x0 guess"], vlims=[(-1, 1), (-1, 1)], **kwargs)


def sampler_frames(rows_by_steps: Mapping[int, Mapping[str, torch.Tensor]], **kwargs):
    """The samplers compared over the number of steps behind a slider (no kernel needed):
    one frame per step count, one row per sampler, the same starting noise in a column.
    Args: {steps: {sampler label: (B, 1, H, W)}}; kwargs go to ``image_frames``."""
    from .interactive import image_frames

    ks = list(rows_by_steps)
    names = list(rows_by_steps[ks[0]])
    frames = [[[im.clamp(-1, 1) for im in rows_by_steps[k][name]] for name in names] for k in ks]
    labels = [f"{k} sampling step{'s' if k != 1 else ''} ({k} forward passes of the U-Net)" for k in ks]
    return image_frames(frames, labels, row_labels=names, vlims=[(-1, 1)] * len(names),
                        horizontal_labels=True, **kwargs)


def sampler_explorer(model: nn.Module, schedule, n: int = 8, seed: int = 1, steps: int = 10):
    """A live widget (needs ipywidgets and a running kernel): sliders for the number of
    steps and the sampler; reruns ``generate`` for ``n`` samples from the same seed."""
    import ipywidgets as widgets
    from IPython.display import display

    def show(steps, sampler):
        gam, mu = SAMPLERS[sampler]
        x = generate(model, schedule.sample_sigmas(steps), n, gam, mu, seed=seed)
        display(plot_sampler_rows({f"{sampler}, {steps} steps": x}))

    return widgets.interactive(show, steps=widgets.IntSlider(value=steps, min=1, max=50),
                               sampler=widgets.Dropdown(options=list(SAMPLERS), value="DDIM"))
