"""The kernel-free interactive figures: N frames embedded, offline, within a size budget."""
import base64
import io
import re

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("IPython")
from PIL import Image  # noqa: E402

from smallunet.book.plotting.common import checkpoint_label, figure  # noqa: E402
from smallunet.book.plotting.interactive import animate, frame_count, frame_labels, image_frames  # noqa: E402

STEP_BUTTONS = ["First frame", "Previous frame", "Next frame", "Last frame"]


def frames_of(html: str) -> list[Image.Image]:
    data = re.findall(r'frames\[\d+\] = "data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    return [Image.open(io.BytesIO(base64.b64decode(d))) for d in data]


def test_image_frames_embeds_one_png_per_frame_offline_and_small():
    rng = np.random.default_rng(0)
    frames = [[[rng.uniform(-1, 1, (28, 28)) for _ in range(3)], [rng.uniform(-1, 1, (14, 14)), None, None]]
              for _ in range(7)]
    out = image_frames(frames, [f"step {i}" for i in range(7)], row_labels=["a", "b"], default=4,
                       caption="made by <the model>", max_bytes=400_000)
    html = out.data
    assert frame_count(html) == 7
    pngs = frames_of(html)
    assert len(pngs) == 7 and all(p.mode == "P" for p in pngs)         # palette PNGs: compact
    assert len(set(base64.b64encode(p.tobytes()) for p in pngs)) == 7     # every frame differs
    assert len(html.encode()) < 400_000
    assert "https://" not in html and "http://" not in html and "fa fa-" not in html
    assert re.search(r'<input type="range" min="0" max="6" step="1" value="4"', html)   # opens on frame 4
    assert 'data-frames="7"' in html
    assert "made by &lt;the model&gt;" in html                          # caption, escaped
    # a discrete sweep: step buttons and the slider, no play, loop or speed control
    assert re.findall(r'<button[^>]*aria-label="([^"]+)"', html) == STEP_BUTTONS
    assert 'type="radio"' not in html and "play_animation" not in html and "interval" not in html
    # the frame's value beside the slider: the default's in the page, each frame's in the script
    assert frame_labels(html) == [f"step {i}" for i in range(7)]
    assert re.search(r'<output class="anim-value"[^>]*>step 4 \u00b7 5 of 7</output>', html)
    assert 'aria-valuetext="step 4"' in html and 'alt="step 4"' in html


def test_animate_calls_update_per_frame_and_draws_the_label():
    fig = figure(2, 2)
    ax = fig.subplots()
    line, = ax.plot([0, 1], [0, 0])
    seen = []

    def update(i):
        seen.append(i)
        line.set_ydata([0, i])

    ax.set_ylim(0, 3)
    html = animate(fig, update, ["a", "b", "c"], dpi=40).data
    assert frame_count(html) == 3 and {0, 1, 2} <= set(seen)


def test_budget_and_bad_arguments_are_refused():
    rng = np.random.default_rng(1)
    frames = [[[rng.uniform(-1, 1, (28, 28))]] for _ in range(3)]
    with pytest.raises(ValueError, match="over max_bytes=1,000"):
        image_frames(frames, ["a", "b", "c"], max_bytes=1_000)
    with pytest.raises(ValueError, match="one label per frame: 3 frames, 2 labels"):
        image_frames(frames, ["a", "b"])
    with pytest.raises(ValueError, match=r"default must be a frame index in \[0, 3\), got 3"):
        image_frames(frames, ["a", "b", "c"], default=3)
    with pytest.raises(ValueError, match="scale must be 'row', 'panel' or 'all', got 'col'"):
        image_frames(frames, ["a", "b", "c"], scale="col")
    with pytest.raises(ValueError, match="at least 2 frames"):
        image_frames(frames[:1], ["a"])


def test_shared_colour_scale_across_frames():
    """A dim frame stays dim: the colour limits come from all frames, not each one."""
    frames = [[[np.full((4, 4), v)]] for v in (0.0, 0.5, 1.0)]
    out = image_frames(frames, ["0", "0.5", "1"], cmap="gray", dpi=20)
    means = [np.asarray(p.convert("L")).mean() for p in frames_of(out.data)]
    assert means[0] < means[1] < means[2]


def test_checkpoint_label_names_step_and_images_seen():
    label = checkpoint_label({"file": "w.safetensors", "weights": "EMA", "sha256": "ab" * 32, "step": 2483,
                              "images_seen": 158912, "epochs": 2.649})
    assert label == ("the shipped checkpoint w.safetensors (EMA weights, sha256 abababab...): "
                     "step 2,483, 158,912 images seen (2.65 epochs)")


def test_conditioning_figures():
    import torch
    from smallunet.book.plotting import conditioning as cp
    labels = torch.arange(20) % 10
    g = torch.Generator().manual_seed(0)
    by_scale = {s: torch.rand(20, 1, 28, 28, generator=g) * 2 - 1 for s in (0.0, 1.0, 3.0)}
    html = cp.guidance_frames(by_scale, labels, 2, default=2, caption="made by a test").data
    assert frame_count(html) == 3 and 'value="2"' in html
    assert len(frames_of(html)) == 3
    assert frame_labels(html) == ["guidance scale s = 0", "guidance scale s = 1", "guidance scale s = 3"]
    assert int(re.search(r'data-panel-px="(\d+)"', html).group(1)) >= 56     # samples large enough to see
    assert 'data-min-panel-px="56"' in html
    with pytest.raises(ValueError, match="under min_panel_px=56"):
        cp.guidance_frames(by_scale, labels, 2, panel=0.6)
    fig = cp.plot_class_grid(by_scale[0.0], labels, 2)
    assert len(fig.axes) == 20 and fig.axes[0].get_ylabel() == "T-shirt/top"
    res = [dict(cfg_scale=s, accuracy=a, min_class_accuracy=a - 0.1, fid=f, fid_class_mean=f + 5)
           for s, a, f in [(0.0, 0.6, 30.0), (2.0, 0.95, 20.0), (6.0, 0.99, 40.0)]]
    floor = dict(accuracy=0.95, min_class_accuracy=0.8, fid=3.0, fid_class_mean=20.0)
    fig = cp.plot_guidance_tradeoff({"results": res, "recommended_cfg_scale": 2.0, "floor": floor})
    assert [ax.get_xlabel() for ax in fig.axes] == ["guidance scale s"] * 2
    fig = cp.plot_neighbours(by_scale[0.0][:4], by_scale[1.0][:4], torch.tensor([0.1, 0.2, 0.3, 0.4]))
    assert [ax.get_title() for ax in fig.axes[4:]] == ["0.10", "0.20", "0.30", "0.40"]
    fig = cp.plot_embedding_similarity(torch.randn(11, 8, generator=g), [str(i) for i in range(11)])
    assert fig.axes[0].images[0].get_array().shape == (11, 11)


def test_every_frame_has_one_layout():
    """The axes do not move between frames, even when a frame's tick labels are wider."""
    fig = figure(3, 2)
    ax = fig.subplots()
    line, = ax.plot([0, 1], [0, 1], color="white")
    tops = [1, 100_000]

    def update(i):
        ax.set_ylim(0, tops[i])           # "100000" on the y axis needs more room than "1"

    html = animate(fig, update, ["narrow ticks", "wide ticks"], dpi=50).data
    lefts = []
    for png in frames_of(html):
        dark = np.asarray(png.convert("L")) < 200
        lefts.append(int(np.argmax(dark.sum(0))))             # the left spine: the longest dark column
    assert lefts[0] == lefts[1] > 0


def test_text_cut_off_at_the_edge_is_refused():
    fig = figure(1, 1)
    ax = fig.subplots()
    ax.plot([0, 1])
    with pytest.raises(ValueError, match="text cut off at the figure's edge"):
        animate(fig, lambda i: None, ["a label far too long to fit above a figure one inch wide", "b"], dpi=40)


def test_labels_are_escaped_in_the_page_and_the_script():
    rng = np.random.default_rng(2)
    frames = [[[rng.uniform(-1, 1, (8, 8))]] for _ in range(2)]
    html = image_frames(frames, ["a < b", "</script>"], dpi=30, panel=2.0).data
    assert "a &lt; b" in html and "</script>\"" not in html and frame_labels(html) == ["a < b", "</script>"]


def test_peak_order_sorts_the_embedding_by_the_sigma_of_its_peak():
    import math
    import torch
    from smallunet.book.plotting.embedding import peak_order
    centres = torch.tensor([5.0, 0.01, 0.3, 20.0, 1.0])

    def embedder(batches, sigma):           # number j is largest at sigma = centres[j]
        return -(sigma.log()[:, None] - centres.log()[None, :]) ** 2

    order, peak = peak_order(embedder)
    assert order.tolist() == [1, 2, 4, 0, 3]
    np.testing.assert_allclose(peak, centres.numpy(), rtol=0.05)
    assert math.isclose(peak[1], 0.01, rel_tol=1e-5) and math.isclose(peak[3], 20.0, rel_tol=1e-5)


def test_trajectory_frames_last_frame_has_no_empty_panel(monkeypatch):
    import torch
    from smallunet.book.plotting import interactive, sampling
    seen = {}

    def capture(frames, labels, **kwargs):
        seen.update(frames=frames, labels=labels)
        return "html"

    monkeypatch.setattr(interactive, "image_frames", capture)
    g = torch.Generator().manual_seed(0)
    xts = [torch.rand(3, 1, 8, 8, generator=g) for _ in range(4)]
    x0_hats = [torch.rand(3, 1, 8, 8, generator=g) for _ in range(3)]
    sampling.trajectory_frames(xts, x0_hats, torch.tensor([2.0, 1.0, 0.5, 0.01]))
    assert len(seen["frames"]) == 4 and len(seen["labels"]) == 4
    assert all(im is not None for frame in seen["frames"] for row in frame for im in row)
    torch.testing.assert_close(seen["frames"][-1][0][0], xts[-1][0])         # the final samples on top
    assert seen["labels"][-1].startswith("after step 3: the final samples")


def test_the_layout_leaves_room_for_the_longest_heading():
    """A two-line label on one frame gets its room in every frame: the layout kept is the
    one made for that frame, even where the square images' boxes do not shrink with it
    (the layout that leaves the images least room is kept, measured before the aspect)."""
    from smallunet.book.plotting.common import new_figure

    def grid():
        fig, axes = new_figure(2, 4, size=(1.0, 1.0))
        fig.set_size_inches(4.0, 2.4)                 # as image_frames sizes chapter 8's trajectory
        for ax in axes.flat:
            ax.imshow(np.zeros((8, 8)))
        axes[0, 0].set_ylabel("x_t", fontsize=8)
        axes[1, 0].set_ylabel("x0 guess", fontsize=8)
        return fig, axes

    labels = ["one line"] * 3 + ["two lines:\nthe second"]
    fig, axes = grid()
    animate(fig, lambda i: None, labels, dpi=80)
    assert fig._suptitle.get_text() == labels[-1]                      # the last frame drawn
    top = max(ax.get_window_extent().y1 for ax in axes[0])
    assert fig._suptitle.get_window_extent().y0 >= top - 1, "the two-line heading overlaps the panels"
