"""smallunet.book.anatomy: the skip trace, the level table, FLOPs per stage and the
attention maps agree with the model they were recorded from."""
from __future__ import annotations

import pytest
import torch
from einops import rearrange
from torch.utils.flop_counter import FlopCounterMode

from smallunet import AttnBlock, Scaled, Unet
from smallunet.book.costs import count_parameters, dit_cost, flop_counter
from smallunet.book.anatomy import (attention_maps, flop_counts, level_table, pop_modules,
                                    push_modules, skip_ablation, skip_trace, stages, zero_skip)

# (in_dim, ch, ch_mult, num_res_blocks, attn_resolutions): small, and the book's model
SETTINGS = [
    (16, 32, (1, 2), 1, (8,)),
    (16, 32, (1, 1, 2), 2, (16, 4)),
    (28, 64, (1, 1, 2), 2, (14,)),
]


def make(in_dim, ch, ch_mult, num_res_blocks, attn_resolutions, seed=0):
    torch.manual_seed(seed)
    model = Scaled(Unet)(in_dim, 1, 1, ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks,
                         attn_resolutions=attn_resolutions)
    return model.eval().requires_grad_(False)


def inputs(model, batch=2, sigma=1.5):
    g = torch.Generator().manual_seed(1)
    return torch.randn((batch,) + model.input_dims, generator=g), torch.tensor(sigma)


@pytest.mark.parametrize("setting", SETTINGS)
def test_skip_trace_pushes_equal_pops_and_match(setting):
    model = make(*setting)
    x, sigma = inputs(model)
    trace = skip_trace(model, x, sigma)
    pushes = [e for e in trace if e.kind == "push"]
    pops = [e for e in trace if e.kind == "pop"]
    assert len(pushes) == len(pops) == len(push_modules(model)) == len(pop_modules(model))
    assert [e.module for e in pushes] == [n for n, _ in push_modules(model)]
    assert [e.module for e in pops] == [n for n, _ in pop_modules(model)]
    assert all(e.kind == "push" for e in trace[:len(pushes)]), "every push comes before the first pop"
    assert all(e.matches for e in pops), "each popped skip is exactly the tensor that was pushed"
    # last in, first out: pop k takes push P-1-k, with its shape
    assert [e.partner for e in pops] == [p.step for p in reversed(pushes)]
    assert all(trace[e.partner].shape == e.shape for e in pops)
    assert trace[-1].depth == 0
    for e in pops:                                # h and skip share batch and resolution
        assert e.h_shape[0] == e.shape[0] and e.h_shape[2:] == e.shape[2:]


@pytest.mark.parametrize("setting", SETTINGS[:2])
def test_level_table_agrees_with_the_model(setting):
    model = make(*setting)
    rows = level_table(model)
    assert [r["stage"] for r in rows] == [n for n, _ in stages(model)]
    assert sum(r["params"] for r in rows) == count_parameters(model)
    assert sum(r["pushes"] for r in rows) == sum(r["pops"] for r in rows) == len(push_modules(model))
    x, sigma = inputs(model)
    pops = [e for e in skip_trace(model, x, sigma) if e.kind == "pop"]
    inputs_from_trace = [f"{e.h_shape[1]}+{e.shape[1]}" for e in pops]
    assert sum((r["block_inputs"] or [] for r in rows), []) == inputs_from_trace
    for r in rows:
        if r["stage"].startswith(("downs", "ups")) or r["stage"] == "mid":
            assert r["attention"] == (r["resolution"] in model.attn_resolutions)


@pytest.mark.parametrize("setting", SETTINGS[:2])
def test_zero_skip_changes_only_inside_the_with(setting):
    model = make(*setting)
    x, sigma = inputs(model)
    base = model(x, sigma)
    for k in range(len(pop_modules(model))):
        with zero_skip(model, k):
            ablated = model(x, sigma)
        assert not torch.equal(ablated, base), f"zeroing skip {k} changed nothing"
    torch.testing.assert_close(model(x, sigma), base, rtol=0, atol=0)
    with pytest.raises(ValueError, match="pop_index"):
        with zero_skip(model, len(pop_modules(model))):
            pass
    with pytest.raises(ValueError, match="mode must be 'zero' or 'mean', got 'drop'"):
        with zero_skip(model, 0, mode="drop"):
            pass


def test_mean_ablation_replaces_the_skip_by_its_batch_mean():
    model = make(*SETTINGS[0])
    x, sigma = inputs(model)
    pops = pop_modules(model)
    _, push = push_modules(model)[len(pops) - 1]           # what pop 0 pops: the last push
    seen = {}
    with zero_skip(model, 0, mode="mean"):                 # its hook runs first ...
        handle = pops[0][1].register_forward_pre_hook(lambda m, a: seen.__setitem__("in", a[0].clone()))
        model(x, sigma)                                    # ... then ours records what the block gets
        handle.remove()
    from smallunet.book.anatomy import _out_channels
    skip = seen["in"][:, -_out_channels(push):]            # the skip's channels, at the end
    torch.testing.assert_close(skip, skip.mean(0, keepdim=True).expand_as(skip))


def test_skip_ablation_reports_every_skip_and_level():
    model = make(*SETTINGS[0])
    x0 = torch.rand(4, model.in_ch, model.in_dim, model.in_dim) * 2 - 1
    out = skip_ablation(model, x0, sigmas=(0.1, 1.0))
    n = len(pop_modules(model))
    assert set(out["base"]) == {0.1, 1.0}
    assert all(len(out[(m, s)]) == n for m in ("zero", "mean") for s in (0.1, 1.0))


@pytest.mark.parametrize("setting", SETTINGS)
def test_flop_stages_add_up_to_flopcountermode_total(setting):
    model = make(*setting)
    x, sigma = inputs(model, batch=1)
    flops = flop_counts(model, x, sigma)
    assert flops["other"] == 0
    assert sum(v for k, v in flops.items() if k not in ("other", "total")) == flops["total"]
    with FlopCounterMode(display=False) as plain:      # torch's own count, without our attention formula
        model(x, sigma)
    # torch alone has no formula for the CPU attention kernel (2.x): ours adds it, removes nothing
    assert flops["total"] >= plain.get_total_flops()
    c_in, ch = model.in_ch, model.ch                    # closed form for a 3x3 convolution
    assert flops["conv_in"] == 2 * model.in_dim ** 2 * ch * c_in * 9


def test_attention_flops_equal_an_explicit_softmax():
    torch.manual_seed(0)
    block = AttnBlock(64).eval()
    x = torch.randn(1, 64, 8, 8)
    with flop_counter() as ours:
        block(x)
    tokens = block.tokens(x)
    q, k, v = block.attn.qkv_heads(tokens)
    with FlopCounterMode(display=False) as explicit:   # the same work done by hand with matmuls
        block.attn.qkv(tokens)
        a = torch.softmax(q @ k.transpose(-2, -1) / block.attn.head_dim ** 0.5, dim=-1)
        block.attn.proj(rearrange(a @ v, "b h n k -> b n (h k)"))
        block.proj_out(x)
    assert ours.get_total_flops() == explicit.get_total_flops()


@pytest.mark.parametrize("setting", SETTINGS[1:])
def test_attention_maps_are_softmax_rows_that_reproduce_the_block(setting):
    model = make(*setting)
    x, sigma = inputs(model)
    maps = attention_maps(model, x, sigma)
    blocks = {n: m for n, m in model.named_modules() if isinstance(m, AttnBlock)}
    assert list(maps) == list(blocks)
    for name, a in maps.items():
        n = a.shape[-1]
        assert a.shape == (x.shape[0], blocks[name].attn.num_heads, n, n)
        assert (a >= 0).all()
        torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:-1]))
    # the map of the first block, used by hand, gives that block's output
    name, block = next(iter(blocks.items()))
    seen = {}
    handle = block.register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out))
    model(x, sigma)
    handle.remove()
    h = block.attn.qkv_heads(block.tokens(seen["x"]))[2]              # v: (B, heads, N, k)
    h = block.attn.proj(rearrange(maps[name] @ h, "b h n k -> b n (h k)"))
    side = seen["x"].shape[-1]
    out = seen["x"] + block.proj_out(rearrange(h, "b (h w) c -> b c h w", h=side, w=side))
    torch.testing.assert_close(out, seen["out"], rtol=1e-4, atol=1e-5)


def test_dit_cost_equals_smalldiffusion_dit():
    smalldiffusion = pytest.importorskip("smalldiffusion")
    cfg = dict(in_dim=28, channels=1, patch_size=2, depth=6, head_dim=32, num_heads=6, mlp_ratio=4.0)
    dit = smalldiffusion.DiT(**cfg).eval()
    with flop_counter() as counter, torch.no_grad():
        dit(torch.zeros(1, 1, 28, 28), torch.tensor(1.0))
    cost = dit_cost(**cfg)
    assert cost["params"] == sum(p.numel() for p in dit.parameters() if p.requires_grad)
    assert cost["flops"] == counter.get_total_flops()
    assert cost["tokens"] == 14 * 14


def test_rejects_a_model_that_is_not_a_unet():
    with pytest.raises(TypeError, match="Unet"):
        level_table(torch.nn.Linear(2, 2))
