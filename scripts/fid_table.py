"""FID against the number of sampling steps for several samplers, written as a markdown
table to bench/fid_vs_steps.md (the chapter Sampling displays that file).

    python scripts/fid_table.py                                   # 500 samples per point
    python scripts/fid_table.py --n 2000 --steps 5 10 20 50 100   # on a GPU
    python scripts/fid_table.py --threads 1 --precision fp32

Every sampler starts from the same noise (seed 0), the samples are scored with
``smallunet.evaluation.fid`` against all 10,000 test images (the protocol's reference), and the real-versus-real
floor ``fid_floor(n)`` is written beside them. The file records the command, the
machine, the checkpoint (step and SHA-256) and the wall time, so a stale table can
be recognised: re-run the command after the shipped weights change.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from smallunet import ScheduleLogLinear, default_device  # noqa: E402
from smallunet.evaluation import fid_floor, reference_statistics  # noqa: E402
from smallunet.book.plotting.sampling import fid_markdown  # noqa: E402
from smallunet.evaluation import SAMPLERS, fid_vs_steps  # noqa: E402
from smallunet.pretrained import load_pretrained, pretrained_info  # noqa: E402
from smallunet.device import bf16_supported, cpu_name  # noqa: E402

EXTRA = {"smalldiffusion example": (1.6, 0.0)}   # the sampler of the FashionMNIST example


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=500, help="samples per point, and real images in the reference (default 500)")
    p.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 50], help="numbers of sampling steps")
    p.add_argument("--batch", type=int, default=250, help="samples per forward pass")
    p.add_argument("--device", default=None, help="default: smallunet.default_device()")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="auto: bf16 autocast where it is fast (as the trainer), else fp32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "fid_vs_steps.md")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else default_device()
    bf16 = bf16_supported(device) if args.precision == "auto" else args.precision == "bf16"
    info = pretrained_info()
    model = load_pretrained().to(device)
    schedule = ScheduleLogLinear(N=800, sigma_min=0.01, sigma_max=20)

    start = time.time()
    ref_stats = reference_statistics()          # the protocol's reference: all 10,000 test images
    floor = fid_floor(args.n, seed=args.seed)
    samplers = dict(SAMPLERS, **EXTRA)
    results = fid_vs_steps(model, schedule, ref_stats, steps=args.steps, n=args.n, samplers=samplers,
                           batch=args.batch, seed=args.seed, bf16=bf16)
    minutes = (time.time() - start) / 60

    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads")
    command = "python scripts/fid_table.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    text = f"""# FID against sampling steps

{args.n} samples per point, scored against all 10,000 FashionMNIST test images with the
FID-like score of `smallunet.evaluation` (features of the book's FashionMNIST classifier;
not comparable with published FIDs). Every sampler starts from the same noise
(seed {args.seed}); lower is better. The last row is the real-versus-real floor at the
same count (`fid_floor({args.n})`, {args.n} training images against the same reference):
what a perfect generator would score.

{fid_markdown(results, floor, samplers=samplers)}

- command: `{command.strip()}`
- checkpoint: the shipped `{info['file']}`, step {info['step']} ({info['epochs']} epochs at batch
  {info['batch_size']}), SHA-256 `{info['sha256']}`
- machine: {machine}; torch {torch.__version__}; sampling precision: {'bf16 autocast' if bf16 else 'fp32'}
- wall time: {minutes:.1f} min; written {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
