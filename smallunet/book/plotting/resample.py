"""Figures for the chapter Upsample and Downsample."""
from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .common import figure

__all__ = ["plot_sampling_grid"]

_PADDINGS = {   # name -> (pixels padded before, after): along one axis
    "Downsample: pad (0, 1)": (0, 1),
    "symmetric: pad (1, 1)": (1, 1),
}


def _draw_row(ax, size: int, pad: tuple[int, int]) -> None:
    """One axis of a stride-2, 3-tap convolution: input pixels, kernels, output blocks."""
    before, after = pad
    out = (size + before + after - 3) // 2 + 1
    used = {2 * i - before + o for i in range(out) for o in range(3)}
    for j in range(-before, size + after):
        is_pad = j < 0 or j >= size
        ax.add_patch(Rectangle((j, 0), 1, 1, facecolor="0.85" if is_pad else "white",
                               hatch="//" if is_pad else None, edgecolor="0.3",
                               alpha=1.0 if (not is_pad or j in used) else 0.35, lw=0.8))
        ax.text(j + 0.5, 0.5, "0" if is_pad else str(j), ha="center", va="center", fontsize=9,
                color="0.4" if is_pad else "black")
    for i in range(out):
        lo = 2 * i - before                    # first input pixel under output i's kernel
        y = 1.35 + 0.4 * (i % 2)
        color = f"C{i % 10}"
        ax.plot([lo + 0.1, lo + 2.9], [y, y], color=color, lw=2)
        ax.plot([lo + 0.1, lo + 0.1], [y - 0.12, y], color=color, lw=2)
        ax.plot([lo + 2.9, lo + 2.9], [y - 0.12, y], color=color, lw=2)
        ax.plot(lo + 1.5, y, "o", color=color, ms=5)                       # kernel centre
        ax.add_patch(Rectangle((2 * i, 2.5), 2, 0.8, facecolor=color, alpha=0.25,
                               edgecolor=color, lw=1.2))                   # the block output i stands for
        ax.text(2 * i + 1, 2.9, f"out {i}", ha="center", va="center", fontsize=9)
        ax.plot([2 * i + 1, 2 * i + 1], [1.05, 2.5], color=color, ls=":", lw=1)   # block centre
    ax.set_xlim(-2.6, 9.3)                     # the same scale in every panel (sizes up to 9)
    ax.set_ylim(-0.2, 3.5)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.text(-1.25, 0.5, "input", ha="right", va="center", fontsize=9)
    ax.text(-1.25, 2.9, "output", ha="right", va="center", fontsize=9)


def plot_sampling_grid(sizes: tuple[int, ...] = (8, 7)) -> Figure:
    """Which input pixels each output pixel of a stride-2 3x3 convolution reads, along
    one axis, for the Downsample's padding and for symmetric padding, at each size.

    Brackets: the 3 input pixels under one output pixel's kernel (dot: the kernel's
    centre). Shaded blocks: the 2 input pixels the output pixel stands for, the ones
    a nearest-neighbour Upsample copies it back to (dotted line: the block's centre).
    Hatched cells are zero padding (faint: never read).
    """
    panels = [(size, name, pad) for size in sizes for name, pad in _PADDINGS.items()]
    fig = figure(7.5, 2.1 * len(panels) + 0.5)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (size, name, pad) in zip(axes, panels):
        _draw_row(ax, size, pad)
        out = (size + sum(pad) - 3) // 2 + 1
        ax.set_title(f"{name}, H = {size} → {out} → Upsample {2 * out}", fontsize=10)
    fig.suptitle("The kernel's centre (dot) sits half a pixel off the centre of the\n"
                 "block of two pixels it stands for (dotted line)", fontsize=10)
    return fig
