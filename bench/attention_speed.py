"""Attention on the CPU: the fused kernel against two matmuls and a softmax.

``smallunet.Attention`` computes softmax(q k^T / sqrt(d)) v either with
``F.scaled_dot_product_attention`` (PyTorch's fused kernel) or explicitly
(``Attention.softmax_weights(q, k) @ v``); ``smallunet.attention.use_explicit_attention``
picks the explicit form for bf16 tensors on the CPU with at most
``EXPLICIT_MAX_TOKENS`` tokens. This script measures the two forms on the shapes of the
book's U-Net (batch 128, one head of 128 channels at 7x7 and 14x14) and on longer
sequences, in bf16 and fp32, forward only and forward + backward, interleaved within each
repeat, and writes the table (medians, min and max, ratio fused/explicit) with the
machine and the command:

    python bench/attention_speed.py --threads 1 --json bench/attention.json --md bench/attention.md
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from smallunet.attention import EXPLICIT_MAX_TOKENS, Attention
from smallunet.device import cpu_name

# (batch, tokens, head_dim): the U-Net's 7x7 and 14x14 attention at batch 128, 28x28, 56x56
SHAPES = ((128, 49, 128), (128, 196, 128), (32, 784, 64), (8, 3136, 64))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per form (default 5)")
    p.add_argument("--shapes", type=str, nargs="+", default=None,
                   help="shapes as BxNxD (default: " + " ".join("x".join(map(str, s)) for s in SHAPES) + ")")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--md", type=Path, default=None, help="write the table here (markdown)")
    return p.parse_args(argv)


def parse_shape(text: str) -> tuple[int, int, int]:
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(s.isdigit() and int(s) > 0 for s in parts):
        raise ValueError(f"a shape must be BxNxD with three positive integers, such as 128x196x128, got {text!r}")
    return tuple(int(s) for s in parts)


def form(explicit: bool, q, k, v, backward: bool):
    attn = Attention(head_dim=q.shape[-1], num_heads=q.shape[1])   # only its softmax_weights is used
    def run():
        if explicit:
            out = attn.softmax_weights(q, k) @ v          # what Attention.forward runs on the explicit path
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        if backward:
            out.sum().backward()
        return out
    return run


def measure(shape, dtype, backward: bool, repeats: int) -> dict:
    B, N, D = shape
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, 1, N, D, generator=g).to(dtype).requires_grad_(backward) for _ in range(3))
    forms = {"fused": form(False, q, k, v, backward), "explicit": form(True, q, k, v, backward)}
    with torch.no_grad() if not backward else torch.enable_grad():
        a, b = forms["fused"](), forms["explicit"]()            # warm-up, and the two agree
        tol = 3e-2 if dtype == torch.bfloat16 else 1e-4
        torch.testing.assert_close(a.float(), b.float(), rtol=tol, atol=tol)
        times = {name: [] for name in forms}
        for r in range(repeats):
            for name in (list(forms) if r % 2 == 0 else list(forms)[::-1]):   # interleaved, order alternating
                t = time.perf_counter()
                forms[name]()
                times[name].append(time.perf_counter() - t)
    med = {name: statistics.median(t) for name, t in times.items()}
    return dict(shape=list(shape), dtype=str(dtype).replace("torch.", ""), backward=backward,
                ms={name: [1000 * x for x in t] for name, t in times.items()},
                median_ms={name: 1000 * m for name, m in med.items()},
                ratio=med["fused"] / med["explicit"])


def table(rows: list[dict]) -> str:
    lines = ["| batch, tokens, head dim | dtype | pass | fused ms (min-max) | explicit ms (min-max) | fused / explicit |",
             "|---|---|---|---:|---:|---:|"]
    for r in rows:
        def cell(name):
            return f"{r['median_ms'][name]:.1f} ({min(r['ms'][name]):.1f}-{max(r['ms'][name]):.1f})"
        lines.append(f"| {', '.join(map(str, r['shape']))} | {r['dtype']} | "
                     f"{'forward + backward' if r['backward'] else 'forward'} | {cell('fused')} | "
                     f"{cell('explicit')} | {r['ratio']:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    shapes = [parse_shape(s) for s in args.shapes] if args.shapes else list(SHAPES)
    command = "python " + " ".join([sys.argv[0]] + (sys.argv[1:] if argv is None else list(argv)))
    info = dict(cpu=cpu_name(), cores=os.cpu_count(), threads=torch.get_num_threads(), torch=torch.__version__,
                loadavg_start=os.getloadavg())
    rows = [measure(s, dt, bw, args.repeats) for s in shapes
            for dt in (torch.bfloat16, torch.float32) for bw in (True, False)]
    info["loadavg_end"] = os.getloadavg()
    text = table(rows)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(dict(command=command, machine=info, rows=rows), indent=1) + "\n")
    if args.md:
        args.md.write_text("\n".join([
            "# Attention on the CPU: fused kernel against two matmuls", "",
            "Written by `bench/attention_speed.py` from what that run measured: "
            "`F.scaled_dot_product_attention` (fused) against `softmax(q k^T / sqrt(d)) @ v` (explicit), "
            f"one head, interleaved in each of {args.repeats} repeats; medians with min and max. "
            "`smallunet.Attention` takes the explicit form for bf16 on the CPU up to "
            f"{EXPLICIT_MAX_TOKENS} tokens (`smallunet.attention.use_explicit_attention`).", "",
            f"command: `{command}`", "",
            f"machine: {info['cpu']}, {info['cores']} cores, {info['threads']} torch threads, torch {info['torch']}; "
            f"load average {tuple(round(x, 2) for x in info['loadavg_start'])} at the start, "
            f"{tuple(round(x, 2) for x in info['loadavg_end'])} at the end", "",
            text, ""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
