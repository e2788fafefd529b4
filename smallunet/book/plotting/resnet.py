"""Figures for the chapter on the ResnetBlock: how the noise embedding is added to
every pixel, and how the same input gives different feature maps at different sigma."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from .common import figure, hide_ticks, new_figure, show_image


def _np(x) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def plot_broadcast(h: torch.Tensor, shift: torch.Tensor, channel: int) -> Figure:
    """One channel of a feature map, the constant plane that the embedding adds to it,
    and their sum: ``h[c] + shift[c]`` with ``shift[:, :, None, None]`` broadcast over H, W.

    Args:
        h: (C, H, W) feature map of one image (after layer1).
        shift: (C,) the embedding projected to C channels (``temb_proj(temb)[0]``).
        channel: which channel to show.
    """
    h, shift = _np(h), _np(shift)
    plane = np.full_like(h[channel], shift[channel])
    panels = [(h[channel], f"h[{channel}]  ({h.shape[1]}x{h.shape[2]})"),
              (plane, f"shift[{channel}] = {shift[channel]:+.3f}\nbroadcast to {h.shape[1]}x{h.shape[2]}"),
              (h[channel] + plane, f"h[{channel}] + shift[{channel}]")]
    lo = min(p.min() for p, _ in panels)
    hi = max(p.max() for p, _ in panels)
    fig, axes = new_figure(1, 3, size=(2.2, 2.5))
    for ax, (img, title) in zip(axes[0], panels):
        im = ax.imshow(img, cmap="RdBu_r", vmin=-max(abs(lo), abs(hi)), vmax=max(abs(lo), abs(hi)))
        hide_ticks(ax)
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="value (same scale in all three)")
    return fig


def plot_sigma_shift(sigmas: torch.Tensor, shifts: torch.Tensor, channels: Sequence[int]) -> Figure:
    """The per-channel shift ``temb_proj(temb(sigma))`` as a function of sigma.

    Args:
        sigmas: (S,) noise levels, increasing.
        shifts: (S, C) the shift of every channel at every sigma.
        channels: channels to draw in colour (the others are drawn faint grey).
    """
    sigmas, shifts = _np(sigmas), _np(shifts)
    fig = figure(6.0, 3.2)
    ax = fig.subplots()
    ax.plot(sigmas, shifts, color="0.85", lw=0.6)
    for c in channels:
        ax.plot(sigmas, shifts[:, c], lw=1.8, label=f"channel {c}")
    ax.set_xscale("log")
    ax.set_xlabel("sigma (log scale)")
    ax.set_ylabel("shift added to the channel")
    ax.set_title(f"temb_proj(temb(sigma)): one curve per channel ({shifts.shape[1]} channels)", fontsize=10)
    ax.legend(fontsize=8, ncols=2)
    return fig


def plot_channel_maps(image: torch.Tensor, outputs: torch.Tensor, sigmas: Sequence[float],
                      channels: Sequence[int]) -> Figure:
    """A block's output channels for the same input at several sigma.

    Args:
        image: (1, H, W) the image the input came from, shown in the first column.
        outputs: (S, C, H, W) the block's output at each of the S noise levels.
        sigmas: the S noise levels (one row each).
        channels: the channels to show (one column each); each column has one colour
            scale for all rows, so a change between rows is a change in the values.
    """
    outputs = _np(outputs)
    fig, axes = new_figure(len(sigmas), len(channels) + 1, size=(1.3, 1.3))
    for i, s in enumerate(sigmas):
        show_image(axes[i, 0], image, title="input image" if i == 0 else None)
        axes[i, 0].set_ylabel(f"sigma = {s:g}", fontsize=9)
        for j, c in enumerate(channels):
            col = outputs[:, c]
            lim = np.abs(col).max()
            axes[i, j + 1].imshow(col[i], cmap="RdBu_r", vmin=-lim, vmax=lim)
            hide_ticks(axes[i, j + 1])
            if i == 0:
                axes[i, j + 1].set_title(f"channel {c}", fontsize=9)
    return fig
