"""Interactive figures that need no kernel: precomputed frames behind a slider.

Most readers read the book as static HTML, where an ipywidgets control is blank
(offline) or frozen (its Python callback cannot run). Here a figure is drawn once per
frame (one sigma, one sampling step, one query pixel) and the frames are embedded as
PNG images behind a slider and step buttons that run in the browser alone: no kernel,
no network, no script from elsewhere.

    html = animate(fig, update, labels, default=3)        # any figure: update(i) redraws frame i
    html = image_frames(frames, labels, row_labels=...)   # a grid of images, one grid per frame

Both return ``IPython.display.HTML``; make it the value of a notebook cell. The frames
are a discrete sweep, so there is no play button: the reader steps through them (the
buttons, the slider, or the arrow keys on the slider) and the frame's label (which sigma,
which step) is drawn above the figure and written beside the slider, where it changes
with it. Every frame has one layout (the axes do not move between frames). The frames
are base64 PNGs inside the page, so keep them few and small (small figures, low dpi):
a figure over ``max_bytes`` is refused, so that no built page grows past a few MB.
"""
from __future__ import annotations

import base64
import hashlib
import html as html_lib
import io
import itertools
import json
import re
from typing import Callable, Sequence

import numpy as np
from matplotlib.figure import Figure

from .common import new_figure, show_image, to_numpy_image

__all__ = ["animate", "image_frames", "frame_count", "frame_labels", "MAX_BYTES"]

MAX_BYTES = 1_500_000           # default budget of one figure's HTML (frames included)
_FRAME = re.compile(r'frames\[\d+\] = "data:image/png;base64,([A-Za-z0-9+/=]+)"')
_LABELS = re.compile(r"var labels = (\[.*?\]);\n")
_ids = itertools.count()
# the step buttons, left and right of the slider: (name in the script, label, character)
_BUTTONS = (("first", "First frame", "\u21e4"), ("previous", "Previous frame", "\u2039"),
            ("next", "Next frame", "\u203a"), ("last", "Last frame", "\u21e5"))
_STYLE = """<style>
.smallunet-frames .anim-controls { display: flex; align-items: center; gap: 4px; flex-wrap: wrap;
  justify-content: center; margin: 4px 0; }
.smallunet-frames .anim-controls button { min-width: 2em; padding: 0 4px; line-height: 1.6; }
.smallunet-frames .anim-controls input[type=range] { flex: 1 1 200px; max-width: 360px; }
.smallunet-frames output.anim-value { display: block; font-weight: 600; text-align: center;
  font-size: 0.9em; min-height: 1.4em; }
</style>
"""


def _png(fig: Figure, dpi: float) -> bytes:
    """The figure as an 8-bit palette PNG: about half the bytes of matplotlib's RGBA PNG,
    with no visible change for these figures."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    image = Image.open(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    image.convert("RGB").quantize(256).save(out, format="PNG", optimize=True)
    return out.getvalue()


def frame_count(html: str) -> int:
    """How many frames an interactive figure embeds."""
    return len(_FRAME.findall(html))


def frame_labels(html: str) -> list[str]:
    """The label of every frame of an interactive figure, in order."""
    found = _LABELS.search(html)
    return json.loads(found.group(1)) if found else []


def animate(fig: Figure, update: Callable[[int], None], labels: Sequence[str], *,
            default: int = 0, title: str | None = None, caption: str | None = None,
            dpi: float = 80, max_bytes: int = MAX_BYTES):
    """A kernel-free interactive figure: one PNG frame per label, a slider over them.

    Args:
        fig: the figure, with every artist already created (``figure``/``new_figure``).
        update: ``update(i)`` changes the artists to frame i (``set_data`` and the like);
            keep colour limits fixed so that frames compare.
        labels: one string per frame (which sigma, step, pixel): drawn above the figure
            in the frame, and written beside the slider when that frame is shown.
        default: the frame shown when the page opens.
        title: a fixed first line above the frame's label.
        caption: text below the figure (HTML-escaped), e.g. which model made it.
        dpi: resolution of the frames (80 keeps them small).
        max_bytes: refuse (ValueError) a figure whose HTML is larger.
    Returns ``IPython.display.HTML``."""
    from IPython.display import HTML

    labels = [str(s) for s in labels]
    n = len(labels)
    if n < 2:
        raise ValueError(f"an interactive figure needs at least 2 frames, got {n} labels")
    if not 0 <= default < n:
        raise ValueError(f"default must be a frame index in [0, {n}), got {default}")
    if dpi <= 0:
        raise ValueError(f"dpi must be positive, got dpi={dpi}")
    head = fig.suptitle("", fontsize=10)

    def heading(i: int) -> str:
        return labels[i] if title is None else f"{title}\n{labels[i]}"

    # one layout for every frame: lay the figure out for each frame and keep the layout
    # that leaves the axes least room (the one made for the widest labels), so that what
    # any frame draws fits it; the frames are then drawn with that layout, unchanged
    fig.set_dpi(dpi)
    if fig.get_layout_engine() is not None:
        room = []
        for i in range(n):
            update(i)
            head.set_text(heading(i))
            fig.draw_without_rendering()      # runs the layout engine (a closed figure's canvas.draw does not)
            room.append(sum(ax.get_position(original=True).width * ax.get_position(original=True).height
                            for ax in fig.axes))     # as laid out, before an aspect shrinks the box
        tightest = int(np.argmin(room))
        update(tightest)
        head.set_text(heading(tightest))
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
    pngs = []
    for i in range(n):
        update(i)
        head.set_text(heading(i))
        pngs.append(base64.b64encode(_png(fig, dpi)).decode("ascii"))
        cut = _clipped_texts(fig)
        if cut:
            raise ValueError(f"frame {i} ({labels[i]!r}): text cut off at the figure's edge: {cut}; "
                             f"shorten it or widen the figure")
    width, height = _png_size(pngs[0])
    key = hashlib.sha1("".join(pngs + labels).encode()).hexdigest()[:12]
    uid = f"smallunet-anim-{key}-{next(_ids)}"
    esc = lambda text: html_lib.escape(text, quote=True)           # noqa: E731
    name = esc(title or "frame")
    button = ('    <button type="button" data-go="{}" title="{}" aria-label="{}">{}</button>').format
    left, right = ("\n".join(button(go, what, what, char) for go, what, char in part)
                   for part in (_BUTTONS[:2], _BUTTONS[2:]))
    frames_js = "\n".join(f'  frames[{i}] = "data:image/png;base64,{b}";' for i, b in enumerate(pngs))
    body = f"""<figure class="smallunet-frames" data-frames="{n}" style="margin: 0">
{_STYLE}<div class="animation" id="{uid}" style="display: inline-block; min-width: min(100%, 440px); max-width: 100%; text-align: center">
  <img src="data:image/png;base64,{pngs[default]}" width="{width}" height="{height}"
       style="max-width: 100%; height: auto" alt="{esc(heading(default))}">
  <div class="anim-controls">
{left}
    <input type="range" min="0" max="{n - 1}" step="1" value="{default}" aria-label="{name}: choose a frame"
           aria-valuetext="{esc(labels[default])}">
{right}
  </div>
  <output class="anim-value" aria-live="polite">{esc(labels[default])} \u00b7 {default + 1} of {n}</output>
</div>
<script>
(function() {{
  var frames = new Array({n});
{frames_js}
  var labels = {_js(labels)};
  var headings = {_js([heading(i) for i in range(n)])};
  var root = document.getElementById("{uid}");
  var img = root.querySelector("img"), slider = root.querySelector("input[type=range]");
  var value = root.querySelector("output"), n = frames.length, current = {default};
  function show(i) {{
    current = Math.max(0, Math.min(n - 1, i));
    img.src = frames[current];
    img.alt = headings[current];
    slider.value = current;
    slider.setAttribute("aria-valuetext", labels[current]);
    value.textContent = labels[current] + " \u00b7 " + (current + 1) + " of " + n;
    root.querySelectorAll("button").forEach(function(b) {{
      var go = b.getAttribute("data-go");
      b.disabled = (go == "first" || go == "previous") ? current == 0 : current == n - 1;
    }});
  }}
  var go = {{first: function() {{ return 0; }}, previous: function() {{ return current - 1; }},
            next: function() {{ return current + 1; }}, last: function() {{ return n - 1; }}}};
  slider.addEventListener("input", function() {{ show(parseInt(slider.value, 10)); }});
  root.querySelectorAll("button").forEach(function(b) {{
    b.addEventListener("click", function() {{ show(go[b.getAttribute("data-go")]()); }});
  }});
  show(current);
}})();
</script>
"""
    if caption:
        body += f'<figcaption style="font-size: 0.85em">{html_lib.escape(caption)}</figcaption>\n'
    body += "</figure>\n"
    if frame_count(body) != n or "https://" in body or "http://" in body:
        raise RuntimeError(f"expected {n} frames and no network link in the HTML")
    size = len(body.encode())
    if size > max_bytes:
        raise ValueError(f"interactive figure is {size:,} bytes, over max_bytes={max_bytes:,}: "
                         f"use fewer frames ({n}), a smaller figure or a lower dpi ({dpi})")
    return HTML(body)


def _clipped_texts(fig: Figure) -> list[str]:
    """What of ``fig`` reaches past its edges by more than a pixel: its heading and texts,
    and any axes with what it draws (tick labels, axis labels, titles), named by its texts."""
    box = fig.bbox

    def out(e) -> bool:
        return e.x0 < box.x0 - 1 or e.y0 < box.y0 - 1 or e.x1 > box.x1 + 1 or e.y1 > box.y1 + 1

    cut = [t.get_text() for t in [fig._suptitle, *fig.texts]
           if t is not None and t.get_visible() and t.get_text().strip() and out(t.get_window_extent())]
    for ax in fig.axes:
        if ax.get_visible() and ax.axison and out(ax.get_tightbbox()):
            name = ax.get_title() or ax.get_ylabel() or ax.get_xlabel() or f"axes {fig.axes.index(ax)}"
            cut.append(f"the axes {name!r} with its labels")
    return cut


def _js(strings: list[str]) -> str:
    """A JSON list of strings that is safe inside <script> (no "</" to end it early)."""
    return json.dumps(strings, ensure_ascii=False).replace("</", "<\\/")


def _png_size(b64: str) -> tuple[int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(b64))).size


def _limits(values: list[np.ndarray], percentile: float) -> tuple[float, float]:
    flat = np.concatenate([v.ravel() for v in values])
    if percentile >= 100:
        return float(flat.min()), float(flat.max())
    return float(np.percentile(flat, 100 - percentile)), float(np.percentile(flat, percentile))


def image_frames(frames, labels: Sequence[str], *, row_labels: Sequence[str] | None = None,
                 col_titles: Sequence[str] | None = None, cmap: str | Sequence[str] | dict = "gray",
                 scale: str = "row", vlims: Sequence[tuple[float, float] | None] | dict | None = None,
                 percentile: float = 100.0, panel: float = 1.0, horizontal_labels: bool = False,
                 min_panel_px: float | None = None, **kwargs):
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
        min_panel_px: refuse (ValueError) a figure whose smallest panel is drawn smaller
            than this many pixels; the page is told it too, so that a browser can check
            the panels are shown at least that large.
        kwargs: passed on to ``animate`` (default, title, caption, dpi, max_bytes).
    The HTML's <figure> carries ``data-panel-px``: the side of the smallest image panel in
    pixels of the frames.
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
    # room above the panels for the heading (title and label lines) and the column titles,
    # so that they do not squeeze the panels
    head_lines = max(str(s).count("\n") + 1 for s in labels) + (kwargs.get("title") is not None)
    title_lines = max((str(t).count("\n") + 1 for t in col_titles), default=0) if col_titles else 0
    fig.set_size_inches(fig.get_figwidth(), fig.get_figheight() + 0.2 * head_lines + 0.16 * title_lines)
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

    out = animate(fig, update, labels, **kwargs)
    # the smallest panel as drawn (the layout is fixed now): a page can check it is large enough
    side = min(min(im.axes.get_window_extent().width, im.axes.get_window_extent().height)
               for im in images.values())
    if min_panel_px is not None and side < min_panel_px:
        raise ValueError(f"the smallest panel is drawn at {side:.0f} px, under min_panel_px={min_panel_px:g}: "
                         f"use a larger panel ({panel:g} in) or a higher dpi")
    attrs = f'data-panel-px="{side:.0f}"' + (f' data-min-panel-px="{min_panel_px:g}"' if min_panel_px else "")
    out.data = out.data.replace('<figure class="smallunet-frames"', f'<figure class="smallunet-frames" {attrs}', 1)
    return out
