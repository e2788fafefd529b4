"""Look inside a Unet while it runs: the skip stack, the levels, the FLOPs per stage
and the attention maps, all recorded with forward hooks on the real model.

    trace = skip_trace(model, x, sigma)        # every push to and pop from the stack
    feats = skip_features(model, x, sigma)     # the tensors pushed, by module name
    rows = level_table(model)                  # resolution, channels, parameters per stage
    flops = flop_counts(model, x, sigma)       # FLOPs per stage (torch.utils.flop_counter)
    maps = attention_maps(model, x, sigma)     # softmax weights of every AttnBlock

Every function takes a ``Unet`` or a wrapped one such as ``Scaled(Unet)``; module
names are those of ``model.named_modules()`` (``"downs.1.blocks.0"``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ..attention import AttnBlock
from ..unet import CondSequential, Unet
from .costs import count_parameters, flop_counter


def _check_unet(model) -> Unet:
    if not isinstance(model, Unet):
        raise TypeError(f"model must be a smallunet Unet (or Scaled(Unet)), got {type(model).__name__}")
    return model


def push_modules(model: Unet) -> list[tuple[str, nn.Module]]:
    """The modules whose outputs go on the skip stack, in the order they are pushed:
    conv_in, then every down block and Downsample."""
    _check_unet(model)
    mods = [("conv_in", model.conv_in)]
    for i, down in enumerate(model.downs):
        mods += [(f"downs.{i}.blocks.{j}", b) for j, b in enumerate(down.blocks)]
        if hasattr(down, "downsample"):
            mods.append((f"downs.{i}.downsample", down.downsample))
    return mods


def pop_modules(model: Unet) -> list[tuple[str, nn.Module]]:
    """The up blocks, in the order they pop the stack (each pops one skip)."""
    _check_unet(model)
    return [(f"ups.{i}.blocks.{j}", b) for i, up in enumerate(model.ups) for j, b in enumerate(up.blocks)]


@dataclass
class SkipEvent:
    """One push to or pop from the skip stack.

    kind: "push" or "pop"; module: the block that pushed or popped; shape: the skip
    tensor's shape (B, C, H, W); depth: stack size after the event; partner: for a
    pop, the index in the trace of the push it takes; matches: for a pop, whether the
    channels concatenated onto h are exactly that pushed tensor."""
    step: int
    kind: str
    module: str
    shape: tuple
    depth: int
    partner: int | None = None
    h_shape: tuple | None = None
    matches: bool | None = None


@torch.no_grad()
def skip_trace(model: Unet, x: torch.Tensor, sigma: torch.Tensor, cond=None) -> list[SkipEvent]:
    """Run the model once and record every push to and pop from the skip stack."""
    events, stack, handles = [], [], []     # stack holds (trace index, tensor)

    def on_push(name):
        def hook(module, args, out):
            stack.append((len(events), out))
            events.append(SkipEvent(len(events), "push", name, tuple(out.shape), len(stack)))
        return hook

    def on_pop(name):
        def hook(module, args):
            cat = args[0]                                     # (B, C_h + C_skip, H, W)
            partner, skip = stack.pop()
            c_skip = skip.shape[1]
            events.append(SkipEvent(len(events), "pop", name, tuple(skip.shape), len(stack), partner,
                                    h_shape=tuple(cat[:, :-c_skip].shape),
                                    matches=torch.equal(cat[:, -c_skip:], skip)))
        return hook

    try:
        handles += [m.register_forward_hook(on_push(n)) for n, m in push_modules(model)]
        handles += [m.register_forward_pre_hook(on_pop(n)) for n, m in pop_modules(model)]
        model(x, sigma, cond=cond)
    finally:
        for h in handles:
            h.remove()
    return events


@torch.no_grad()
def skip_features(model: Unet, x: torch.Tensor, sigma: torch.Tensor, cond=None) -> dict[str, torch.Tensor]:
    """Run the model once; return what each module pushes on the skip stack, by name
    in push order (``push_modules``), each (B, C, H, W)."""
    out, handles = {}, []
    try:
        for name, m in push_modules(model):
            handles.append(m.register_forward_hook(lambda mod, args, y, name=name: out.__setitem__(name, y)))
        model(x, sigma, cond=cond)
    finally:
        for h in handles:
            h.remove()
    return out


@contextlib.contextmanager
def zero_skip(model: Unet, pop_index: int, mode: str = "zero"):
    """Inside the ``with``, the ``pop_index``-th up block receives, instead of its skip,
    zeros (``mode="zero"``) or the skip's mean over the batch at every position and
    channel (``mode="mean"``, a milder ablation that keeps the average features); the down
    path and every other skip are untouched."""
    pops = pop_modules(model)
    if not 0 <= pop_index < len(pops):
        raise ValueError(f"pop_index must be in [0, {len(pops)}), got {pop_index}")
    if mode not in ("zero", "mean"):
        raise ValueError(f"mode must be 'zero' or 'mean', got {mode!r}")
    _, push = push_modules(model)[len(pops) - 1 - pop_index]     # last pushed, first popped
    c_skip = _out_channels(push)

    def hook(module, args):
        cat = args[0].clone()
        if mode == "zero":
            cat[:, -c_skip:] = 0
        else:
            cat[:, -c_skip:] = cat[:, -c_skip:].mean(0, keepdim=True)
        return (cat,) + tuple(args[1:])

    handle = pops[pop_index][1].register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _out_channels(module: nn.Module) -> int:
    """Channels of what a push module pushes."""
    if isinstance(module, nn.Conv2d):                         # conv_in
        return module.out_channels
    if isinstance(module, CondSequential):                    # ResnetBlock (+ AttnBlock)
        return module[0].out_ch
    return module[-1].out_channels                            # Downsample: pad, conv


def stages(model: Unet) -> list[tuple[str, nn.Module]]:
    """The top-level pieces of the forward pass, in order."""
    _check_unet(model)
    out = [("sig_embed", model.sig_embed)]
    if model.cond_embed is not None:
        out.append(("cond_embed", model.cond_embed))
    out.append(("conv_in", model.conv_in))
    out += [(f"downs.{i}", d) for i, d in enumerate(model.downs)]
    out.append(("mid", model.mid))
    out += [(f"ups.{i}", u) for i, u in enumerate(model.ups)]
    out.append(("out_layer", model.out_layer))
    return out


def level_table(model: Unet) -> list[dict]:
    """One row per stage (see ``stages``): the resolution it works at, channels of h
    in and out, each up block's input as h + skip channels, whether it has attention,
    how many skips it pushes and pops, and its parameters."""
    _check_unet(model)
    L, res = model.num_resolutions, model.in_dim
    pushes, pops = push_modules(model), pop_modules(model)
    skip_ch = [_out_channels(m) for _, m in reversed(pushes)]     # in the order they are popped
    rows = []
    for name, mod in stages(model):
        kind, _, level = name.partition(".")
        r = {"downs": res // 2 ** int(level or 0), "ups": res // 2 ** (L - 1 - int(level or 0)),
             "mid": res // 2 ** (L - 1), "conv_in": res, "out_layer": res}.get(kind)
        convs = [m for m in mod.modules() if isinstance(m, nn.Conv2d)]
        ch_in = convs[0].in_channels if convs else None
        ch_out = convs[-1].out_channels if convs else None
        mine = [i for i, (n, _) in enumerate(pops) if n.startswith(name + ".")]
        block_inputs = None
        if mine:
            ch_in = rows[-1]["ch_out"]                             # h arrives from the stage below
            block_inputs, h = [], ch_in
            for i, (_, b) in zip(mine, (pops[i] for i in mine)):
                block_inputs.append(f"{h}+{skip_ch[i]}")
                h = b[0].out_ch
        rows.append(dict(stage=name, resolution=r, ch_in=ch_in, ch_out=ch_out, block_inputs=block_inputs,
                         attention=any(isinstance(m, AttnBlock) for m in mod.modules()),
                         pushes=sum(n == name or n.startswith(name + ".") for n, _ in pushes),
                         pops=len(mine), params=count_parameters(mod)))
    return rows


@torch.no_grad()
def flop_counts(model: Unet, x: torch.Tensor, sigma: torch.Tensor, cond=None) -> dict[str, int]:
    """FLOPs of one forward pass per stage (see ``stages``), plus ``"other"`` (whatever
    ran outside the stages) and ``"total"``. A multiply-add counts as 2 FLOPs; only
    matmuls, convolutions and attention are counted (norms and activations are not)."""
    _check_unet(model)
    counter = flop_counter()
    with counter:
        model(x, sigma, cond=cond)
    root = type(model).__name__ + "."
    flops = {k[len(root):]: sum(v.values())                   # "downs.0.blocks.1" -> flops
             for k, v in counter.get_flop_counts().items() if k.startswith(root)}
    out = {}
    for name, _ in stages(model):
        # a ModuleList such as downs.0 is never called itself: add up its outermost
        # called submodules (a submodule's FLOPs are already inside its parent's)
        inside = [k for k in flops if k == name or k.startswith(name + ".")]
        outer = [k for k in inside if not any(k.startswith(o + ".") for o in inside)]
        out[name] = sum(flops[k] for k in outer)
    total = counter.get_total_flops()
    out["other"] = total - sum(out.values())
    out["total"] = total
    return out


@torch.no_grad()
def attention_maps(model: nn.Module, x: torch.Tensor, sigma: torch.Tensor, cond=None) -> dict[str, torch.Tensor]:
    """Run the model once; return the softmax weights of every AttnBlock, by module
    name, each (B, heads, N, N) with N = H * W tokens in row-major pixel order."""
    inputs, handles = {}, []
    blocks = [(n, m) for n, m in model.named_modules() if isinstance(m, AttnBlock)]
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no AttnBlock (check attn_resolutions)")
    try:
        for name, block in blocks:
            handles.append(block.register_forward_pre_hook(
                lambda mod, args, name=name: inputs.__setitem__(name, args[0])))
        model(x, sigma, cond=cond)
    finally:
        for h in handles:
            h.remove()
    return {name: block.attention_map(inputs[name]) for name, block in blocks}


def attention_spread(attn: torch.Tensor) -> dict[str, torch.Tensor]:
    """How far and how widely each query looks, from weights (B, heads, N, N) over a
    square grid of N = S * S tokens. Returns, per (B, heads, N) query:
    ``distance``: the attention-weighted mean distance to the attended tokens, in grid
    cells; ``tokens``: exp(entropy) of the row, the number of tokens it would attend to
    if it spread its weight evenly (1: one token; N: all alike)."""
    n = attn.shape[-1]
    side = round(n ** 0.5)
    if side * side != n:
        raise ValueError(f"attn must be over a square grid (N = S * S tokens), got N={n}")
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    pos = torch.stack([rows.flatten(), cols.flatten()], dim=1).to(attn)   # (N, 2)
    dist = torch.cdist(pos, pos)                                          # (N, N)
    entropy = -(attn * attn.clamp_min(1e-12).log()).sum(-1)
    return dict(distance=(attn * dist).sum(-1), tokens=entropy.exp())


@torch.no_grad()
def skip_ablation(model: Unet, x0: torch.Tensor, sigmas, modes=("zero", "mean"), seed: int = 0) -> dict:
    """The error of the x0 estimate with each skip ablated in turn, over noise levels.

    Returns {"base": {sigma: mse}, (mode, sigma): [mse with pop k ablated, k = 0, 1, ...]},
    each an MSE against ``x0`` of ``x_t - sigma * eps_hat`` over all images, with one
    noise draw (``seed``) shared by every variant at a level."""
    out = {"base": {}}
    n_pops = len(pop_modules(model))
    for s in sigmas:
        sig = torch.tensor(float(s))
        xt = x0 + sig * torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
        est = lambda: xt - sig * model(xt, sig)
        out["base"][float(s)] = float(((est() - x0) ** 2).mean())
        for mode in modes:
            errs = []
            for k in range(n_pops):
                with zero_skip(model, k, mode=mode):
                    errs.append(float(((est() - x0) ** 2).mean()))
            out[(mode, float(s))] = errs
    return out
