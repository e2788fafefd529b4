"""Interactive figures that need no kernel: precomputed frames behind a slider.

Most readers read the book as static HTML, where an ipywidgets control is blank
(offline) or frozen (its Python callback cannot run). Here a figure is drawn once per
frame (one sigma, one sampling step, one query pixel) and matplotlib's
``FuncAnimation(...).to_jshtml()`` embeds the frames as PNG images behind a slider and
play buttons that run in the browser alone: no kernel, no network.

    html = animate(fig, update, labels, default=3)        # any figure: update(i) redraws frame i
    html = image_frames(frames, labels, row_labels=...)   # a grid of images, one grid per frame

Both return ``IPython.display.HTML``; make it the value of a notebook cell. The frames
are base64 PNGs inside the page, so keep them few and small (small figures, low dpi):
a figure over ``max_bytes`` is refused, so that no built page grows past a few MB.
"""
from __future__ import annotations

import base64
import html as html_lib
import io
import re
from typing import Callable, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.animation import FuncAnimation
from matplotlib.figure import Figure

from .common import new_figure, show_image, to_numpy_image

__all__ = ["animate", "image_frames", "frame_count", "MAX_BYTES"]

MAX_BYTES = 1_500_000           # default budget of one figure's HTML (frames included)
_NEW_ANIMATION = re.compile(r"(anim(\w+) = new Animation\([^;]*\);)")
_CDN_LINK = re.compile(r"<link[^>]*font-awesome[^>]*>\s*")
# to_jshtml draws its buttons with Font Awesome icons from a CDN: plain characters
# instead, so that the controls show offline (each button keeps its title and aria-label)
_ICONS = {"fa-minus": "\u2212", "fa-fast-backward": "\u21e4", "fa-step-backward": "\u2039",
          "fa-play fa-flip-horizontal": "\u25c0", "fa-pause": "\u2759\u2759", "fa-play": "\u25b6",
          "fa-step-forward": "\u203a", "fa-fast-forward": "\u21e5", "fa-plus": "+"}


_FRAME = re.compile(r'(frames\[\d+\] = "data:image/png;base64,)((?:[A-Za-z0-9+/=]|\\\n)+)"')


def _palette_png(match: re.Match) -> str:
    """One embedded frame re-encoded as an 8-bit palette PNG: about half the bytes of
    matplotlib's RGBA PNG, with no visible change for these figures."""
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(match.group(2).replace("\\\n", ""))))
    buf = io.BytesIO()
    image.convert("RGB").quantize(256).save(buf, format="PNG", optimize=True)
    return f'{match.group(1)}{base64.b64encode(buf.getvalue()).decode("ascii")}"'


def frame_count(html: str) -> int:
    """How many frames a ``to_jshtml`` figure embeds."""
    return len(re.findall(r'frames\[\d+\] = "data:image/', html))


def animate(fig: Figure, update: Callable[[int], None], labels: Sequence[str], *,
            default: int = 0, title: str | None = None, caption: str | None = None,
            dpi: float = 80, fps: float = 2, max_bytes: int = MAX_BYTES):
    """A kernel-free interactive figure: one PNG frame per label, a slider over them.

    Args:
        fig: the figure, with every artist already created (``figure``/``new_figure``).
        update: ``update(i)`` changes the artists to frame i (``set_data`` and the like);
            keep colour limits fixed so that frames compare.
        labels: one string per frame, drawn above the figure (which sigma, step, pixel).
        default: the frame shown when the page opens.
        title: a fixed first line above the frame's label.
        caption: text below the figure (HTML-escaped), e.g. which model made it.
        dpi: resolution of the frames (80 keeps them small).
        fps: frames per second when played.
        max_bytes: refuse (ValueError) a figure whose HTML is larger.
    Returns ``IPython.display.HTML``."""
    from IPython.display import HTML

    labels = [str(s) for s in labels]
    n = len(labels)
    if n < 2:
        raise ValueError(f"an interactive figure needs at least 2 frames, got {n} labels")
    if not 0 <= default < n:
        raise ValueError(f"default must be a frame index in [0, {n}), got {default}")
    if dpi <= 0 or fps <= 0:
        raise ValueError(f"dpi and fps must be positive, got dpi={dpi}, fps={fps}")
    head = fig.suptitle("", fontsize=10)

    def draw(i: int):
        update(i)
        head.set_text(labels[i] if title is None else f"{title}\n{labels[i]}")
        return []

    fig.set_dpi(dpi)
    anim = FuncAnimation(fig, draw, frames=n, interval=1000 / fps, repeat=False,
                         cache_frame_data=False)
    # matplotlib silently drops frames past animation.embed_limit: lift it, check below
    with mpl.rc_context({"animation.embed_limit": 1000.0, "savefig.dpi": dpi}):
        out = anim.to_jshtml(default_mode="once")
    out = _FRAME.sub(_palette_png, out)
    if frame_count(out) != n:
        raise RuntimeError(f"expected {n} frames in the HTML, found {frame_count(out)}")
    out = _CDN_LINK.sub("", out)
    for icon, char in _ICONS.items():
        out = out.replace(f'<i class="fa {icon}"></i>', char)
    if "fa fa-" in out or "https://" in out:
        raise RuntimeError("unexpected to_jshtml output: an icon or a network link is left")
    # the <img> shows the default frame before (or without) JavaScript
    first = re.search(rf'frames\[{default}\] = "(data:image/png;base64,[A-Za-z0-9+/=]+)"', out).group(1)
    alt = html_lib.escape(labels[default], quote=True)
    out, found = re.subn(r'<img id="(_anim_img\w+)">', lambda m: f'<img id="{m.group(1)}" src="{first}" alt="{alt}">',
                         out, count=1)
    if not found:
        raise RuntimeError("unexpected to_jshtml output: no <img id=\"_anim_img...\"> for the frames")
    # open on the default frame: once the Animation exists, move it there
    out, found = _NEW_ANIMATION.subn(lambda m: f"{m.group(1)}\n        anim{m.group(2)}.set_frame({default});",
                                     out, count=1)
    if not found:
        raise RuntimeError("unexpected to_jshtml output: no 'new Animation(...)' to set the default frame")
    body = f'<figure class="smallunet-frames" data-frames="{n}" style="margin: 0">\n{out}'
    if caption:
        body += f'<figcaption style="font-size: 0.85em">{html_lib.escape(caption)}</figcaption>\n'
    body += "</figure>\n"
    size = len(body.encode())
    if size > max_bytes:
        raise ValueError(f"interactive figure is {size:,} bytes, over max_bytes={max_bytes:,}: "
                         f"use fewer frames ({n}), a smaller figure or a lower dpi ({dpi})")
    return HTML(body)


def _limits(values: list[np.ndarray], percentile: float) -> tuple[float, float]:
    flat = np.concatenate([v.ravel() for v in values])
    if percentile >= 100:
        return float(flat.min()), float(flat.max())
    return float(np.percentile(flat, 100 - percentile)), float(np.percentile(flat, percentile))


def image_frames(frames, labels: Sequence[str], *, row_labels: Sequence[str] | None = None,
                 col_titles: Sequence[str] | None = None, cmap: str | Sequence[str] | dict = "gray",
                 scale: str = "row", vlims: Sequence[tuple[float, float] | None] | dict | None = None,
                 percentile: float = 100.0, panel: float = 1.0, horizontal_labels: bool = False,
                 **kwargs):
    """A grid of images per frame behind a slider (see ``animate``).

    Args:
        frames: F frames, each R rows of C images ((H, W) or (1, H, W), array or tensor);
            an image may be None (an empty panel). Panel (r, c) keeps its shape over frames.
        labels: F strings, one per frame.
        row_labels, col_titles: R and C strings beside and above the grid.
        cmap: one colormap, one per row, or a dict {(row, col): name} (others gray).
        scale: how the colour scale is shared; always across all frames, and then per
            "row", per "panel" or over "all" panels.
        vlims: (vmin, vmax) per row (None: computed), or a dict {(row, col): (vmin, vmax)},
            overriding ``scale`` there.
        percentile: clip the computed limits at this percentile (100: min and max).
        panel: inches per panel.
        horizontal_labels: write the row labels horizontally, left of the rows.
        kwargs: passed on to ``animate`` (default, title, caption, dpi, fps, max_bytes).
    """
    grid = [[[None if im is None else to_numpy_image(im) for im in row] for row in f] for f in frames]
    if len(grid) != len(labels):
        raise ValueError(f"need one label per frame: {len(grid)} frames, {len(labels)} labels")
    n_rows, n_cols = len(grid[0]), max(len(row) for row in grid[0])
    if any(len(f) != n_rows or any(len(row) != len(r0) for row, r0 in zip(f, grid[0])) for f in grid):
        raise ValueError(f"every frame must have the layout of the first ({n_rows} rows)")
    if isinstance(cmap, dict):
        cmaps = {(r, c): cmap.get((r, c), "gray") for r in range(n_rows) for c in range(n_cols)}
    else:
        per_row = [cmap] * n_rows if isinstance(cmap, str) else list(cmap)
        if len(per_row) != n_rows:
            raise ValueError(f"cmap must be one name, one per row ({n_rows}) or a dict, got {len(per_row)}")
        cmaps = {(r, c): per_row[r] for r in range(n_rows) for c in range(n_cols)}

    def panel_values(r, c=None):
        cols = range(len(grid[0][r])) if c is None else [c]
        return [f[r][k] for f in grid for k in cols if f[r][k] is not None]

    if scale == "all":
        everything = _limits([v for r in range(n_rows) for v in panel_values(r)], percentile)
        lims = {(r, c): everything for r in range(n_rows) for c in range(len(grid[0][r]))}
    elif scale == "row":
        lims = {}
        for r in range(n_rows):
            vals = panel_values(r)
            lims.update({(r, c): _limits(vals, percentile) if vals else (0, 1) for c in range(len(grid[0][r]))})
    elif scale == "panel":
        lims = {(r, c): _limits(panel_values(r, c), percentile) if panel_values(r, c) else (0, 1)
                for r in range(n_rows) for c in range(len(grid[0][r]))}
    else:
        raise ValueError(f"scale must be 'row', 'panel' or 'all', got {scale!r}")
    if isinstance(vlims, dict):
        lims.update({k: tuple(v) for k, v in vlims.items()})
    else:
        for r, lim in enumerate(vlims or []):
            if lim is not None:
                lims.update({(r, c): tuple(lim) for c in range(len(grid[0][r]))})

    fig, axes = new_figure(n_rows, n_cols, size=(panel, panel))
    images = {}
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r, c]
            first = next((f[r][c] for f in grid if c < len(f[r]) and f[r][c] is not None), None)
            if first is None:
                ax.axis("off")
                continue
            lo, hi = lims[(r, c)]
            show_image(ax, first, vmin=lo, vmax=hi, cmap=cmaps[r, c],
                       title=col_titles[c] if col_titles is not None and r == 0 else None, fontsize=8)
            images[(r, c)] = ax.images[0]
        shown = [c for c in range(n_cols) if (r, c) in images]
        if row_labels is not None and shown:
            axes[r, shown[0]].set_ylabel(row_labels[r], fontsize=8, **(
                dict(rotation=0, ha="right", va="center") if horizontal_labels else {}))

    def update(i):
        for (r, c), im in images.items():
            value = grid[i][r][c]
            im.set_visible(value is not None)
            if value is not None:
                im.set_data(value)

    return animate(fig, update, labels, **kwargs)
