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
from smallunet.book.plotting.interactive import animate, frame_count, image_frames  # noqa: E402


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
    assert re.search(r"anim\w+\.set_frame\(4\);", html)                  # opens on the default frame
    assert 'data-frames="7"' in html
    assert "made by &lt;the model&gt;" in html                          # caption, escaped


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
    assert frame_count(html) == 3 and re.search(r"anim\w+\.set_frame\(2\);", html)
    assert len(frames_of(html)) == 3
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
