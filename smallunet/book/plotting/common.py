"""Small helpers shared by the chapters' plotting modules.

Every function returns a matplotlib ``Figure`` (or fills the ``Axes`` it is given).
Figures come from :func:`figure`, which closes them in pyplot right away: a notebook
cell whose value is the figure then shows it exactly once (the inline backend would
otherwise show it a second time at the end of the cell), and a script that makes
many figures does not accumulate them. Save one with ``fig.savefig(path)``.

Images are tensors or arrays in [-1, 1] (the range of ``load_fashion_mnist``), of
shape (H, W), (C, H, W) or (B, C, H, W) with C = 1 or 3.
"""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["figure", "new_figure", "to_numpy_image", "show_image", "image_grid", "hide_ticks",
           "show_source", "checkpoint_label"]


def figure(width: float = 6.0, height: float = 4.0, *, layout: str | None = "constrained") -> Figure:
    """An empty figure of ``width x height`` inches, already closed in pyplot (see above)."""
    fig = plt.figure(figsize=(width, height), layout=layout)
    plt.close(fig)
    return fig


def to_numpy_image(x) -> np.ndarray:
    """One image as a numpy array for ``imshow``: (H, W) for one channel, (H, W, 3) for three.

    Accepts (H, W), (1, H, W), (3, H, W) or a batch of one (1, C, H, W); values are
    left as they are (pass ``vmin``/``vmax`` to ``imshow`` for the range)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 3:
        if x.shape[0] == 1:
            return x[0]
        if x.shape[0] == 3:
            return np.transpose(x, (1, 2, 0))
    if x.ndim == 2:
        return x
    raise ValueError(f"expected one image of shape (H, W), (1, H, W), (3, H, W) or (1, C, H, W), "
                     f"got shape {x.shape}")


def hide_ticks(ax: Axes) -> Axes:
    """No ticks and no tick labels, the frame kept."""
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def show_image(ax: Axes, x, *, title: str | None = None, vmin: float | None = -1.0,
               vmax: float | None = 1.0, cmap: str = "gray", fontsize: float = 9) -> Axes:
    """Draw one image on ``ax`` (range [vmin, vmax]; ``None`` for the image's own range)."""
    ax.imshow(to_numpy_image(x), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    hide_ticks(ax)
    if title is not None:
        ax.set_title(title, fontsize=fontsize)
    return ax


def new_figure(nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] = (4.0, 3.0),
               **subplot_kw) -> tuple[Figure, np.ndarray]:
    """A figure of ``nrows x ncols`` panels, each ``size`` inches, with a constrained layout.

    Returns (fig, axes) where ``axes`` is always a 2-D array (nrows, ncols)."""
    fig = figure(size[0] * ncols, size[1] * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False, subplot_kw=subplot_kw or None)
    return fig, axes


def image_grid(images, *, ncols: int | None = None, titles: Sequence[str] | None = None,
               size: float = 1.3, vmin: float | None = -1.0, vmax: float | None = 1.0,
               cmap: str = "gray", suptitle: str | None = None) -> Figure:
    """A grid of images, one per panel, with an optional title above each.

    Args:
        images: (B, C, H, W) tensor/array, or a sequence of single images.
        ncols: panels per row (default: all in one row, at most 10).
        titles: one string per image, or None.
        size: inches per panel.
        vmin, vmax: the value range mapped to black and white (None: each image's own).
        suptitle: a title over the whole grid.
    """
    items = list(images)
    n = len(items)
    if n == 0:
        raise ValueError("image_grid needs at least one image, got none")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles must have one entry per image ({n}), got {len(titles)}")
    ncols = ncols or min(n, 10)
    nrows = math.ceil(n / ncols)
    extra = 0.25 if titles is not None else 0.0
    fig = figure(size * ncols, (size + extra) * nrows + (0.3 if suptitle else 0))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            show_image(ax, items[i], title=None if titles is None else titles[i],
                       vmin=vmin, vmax=vmax, cmap=cmap)
        else:
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def show_source(obj):
    """The source code of a function, class or module as a highlighted Python block.

    Read with ``inspect.getsource``, so the book always shows the package's real
    code; displayed as Markdown (Jupyter, Colab and the rendered book all highlight it).
    """
    import inspect

    from IPython.display import Markdown
    return Markdown("```python\n" + inspect.getsource(obj).rstrip() + "\n```")


def checkpoint_label(info: dict | None = None) -> str:
    """One line that says which model made a figure, read from the shipped checkpoint's
    manifest (``smallunet.pretrained.pretrained_info()``, or the ``info`` given):
    'the shipped checkpoint unet_fashion.safetensors (EMA weights, sha256 ae4112e0...):
    step 2,483, 158,912 images seen (2.65 epochs)'."""
    if info is None:
        from ...pretrained import pretrained_info
        info = pretrained_info()
    what = ", ".join(x for x in (f"{info['weights']} weights" if info.get("weights") else "",
                                 f"sha256 {info['sha256'][:8]}..." if info.get("sha256") else "") if x)
    trained = ", ".join(x for x in (f"step {info['step']:,}" if "step" in info else "",
                                    f"{info['images_seen']:,} images seen" if "images_seen" in info else "")
                        if x)
    if "epochs" in info:
        trained += f" ({info['epochs']:.2f} epochs)"
    head = f"the shipped checkpoint {info.get('file', 'unet_fashion')}" + (f" ({what})" if what else "")
    origin = info.get("initialised_from")
    if origin and "step" in info and "images_seen" in info:
        trained += (f", of which {info['images_seen'] - origin['images_seen']:,} images as a conditional model "
                    f"started from {origin.get('name', origin['file'])} at step {origin['step']:,}")
    return head + (": " + trained if trained else "")
