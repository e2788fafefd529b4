"""The introduction's map of the U-Net: unet_layout against the model's own forward
pass (order, resolutions, channels and skips seen by hooks), and a map that fits the
book's column."""
import io
import math
import re

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from PIL import Image  # noqa: E402

from smallunet import Scaled, Unet  # noqa: E402
from smallunet.book.plotting.overview import plot_unet_map, unet_layout  # noqa: E402

BOOK = dict(in_dim=28, in_ch=1, out_ch=1, ch=64, ch_mult=(1, 1, 2), attn_resolutions=(14,))
OTHER = dict(in_dim=16, in_ch=3, out_ch=2, ch=32, ch_mult=(1, 2, 2, 1), num_res_blocks=1,
             attn_resolutions=(4,))


def traced_forward(model):
    """Run forward once with hooks; returns {name: (input x, output)} in the order they ran."""
    seen = {}
    names = {m: n for n, m in model.named_modules()}
    wanted = [m for n, m in model.named_modules()
              if re.fullmatch(r"conv_in|mid|out_layer|(downs|ups)\.\d+\.(blocks\.\d+|downsample|upsample)", n)]
    hooks = [m.register_forward_hook(lambda m, args, out: seen.__setitem__(names[m], (args[0], out)))
             for m in wanted]
    try:
        with torch.no_grad():
            model(torch.randn(1, model.in_ch, model.in_dim, model.in_dim), torch.tensor(1.0))
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize("cfg", [BOOK, OTHER], ids=["book", "other"])
def test_layout_matches_the_forward_pass(cfg, one_thread):
    torch.manual_seed(0)
    model = Scaled(Unet)(**cfg).eval()
    nodes, skips = unet_layout(model)
    seen = traced_forward(model)
    assert [n["name"] for n in nodes] == list(seen)              # forward's order, every module once
    for node in nodes:
        x, out = seen[node["name"]]
        assert (node["in_ch"], node["out_ch"]) == (x.shape[1], out.shape[1]), node
        assert node["level"] == round(math.log2(model.in_dim / out.shape[-1])), node
    levels = len(cfg["ch_mult"]) - 1
    assert [n["level"] for n in nodes if n["kind"] == "mid"] == [levels]   # the mid block on the last level
    # every up block pops one pushed output (LIFO) and concatenates it after h
    ups = [k for k, n in enumerate(nodes) if n["name"].startswith("ups.") and ".blocks." in n["name"]]
    pushed = [k for k, n in enumerate(nodes) if n["name"] == "conv_in" or n["name"].startswith("downs.")]
    assert [b for _, b in skips] == ups
    assert [a for a, _ in skips] == pushed[::-1]
    for a, b in skips:
        x, _ = seen[nodes[b]["name"]]
        skip = seen[nodes[a]["name"]][1]
        assert torch.equal(x[:, -skip.shape[1]:], skip)
        assert torch.equal(x[:, :-skip.shape[1]], seen[nodes[b - 1]["name"]][1])


def test_map_fits_the_book_column(one_thread):
    model = Scaled(Unet)(**BOOK)
    fig = plot_unet_map(model)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")   # as the inline backend stores it
    width, _ = Image.open(buf).size
    assert width <= 660, f"the map is {width} px wide; the book's column is about 660 px"
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
    assert min(t.get_fontsize() for t in texts) >= 8
    labels = [t.get_text() for t in texts]
    for node in unet_layout(model)[0]:
        assert node["label"] in labels
