"""FID against the number of sampling steps for several samplers, written as a markdown
table to bench/fid_vs_steps.md (the chapter Sampling displays that file).

    python scripts/fid_table.py                                   # 500 samples per point
    python scripts/fid_table.py --n 2000 --steps 5 10 20 50 100   # on a GPU
    python scripts/fid_table.py --threads 1 --precision fp32
    python scripts/fid_table.py --precision-study --seeds 0 1 --threads 1

Every sampler starts from the same noise (seed 0), the samples are scored with
``smallunet.distances.fid`` against all 10,000 test images (the protocol's reference), and the real-versus-real
floor ``fid_floor(n)`` is written beside them. The file records the command, the
machine, the checkpoint (step and SHA-256) and the wall time, so a stale table can
be recognised: re-run the command after the shipped weights change.

``--precision-study`` measures instead why two scores of the one model differ: the
protocol's sampler (20 steps, gam=1.6, batches of 250 as ``evaluate``) at ``--n``
samples (default the protocol's 1000) in fp32 and in bf16 autocast for each of
``--seeds``, each set scored whole and as its two halves (a half is exactly what a run
with n/2 samples and the same seed draws), with the floors at n and n/2; it writes
bench/fid_vs_steps_precision.json and .md, continuing a study already begun on the
same weights.
"""
from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from smallunet import ScheduleLogLinear, default_device  # noqa: E402
from smallunet.protocol import fid_floor, reference_statistics  # noqa: E402
from smallunet.book.plotting.sampling import fid_markdown  # noqa: E402
from smallunet.protocol import (PROTOCOL, SAMPLERS, features, fid_vs_steps, floor as protocol_floor,  # noqa: E402
                                  frechet_distance, generate)
from smallunet.pretrained import load_pretrained, pretrained_info  # noqa: E402
from smallunet.device import bf16_supported  # noqa: E402
from smallunet.device import machine_name as device_name  # noqa: E402

EXTRA = {"smalldiffusion example": (1.6, 0.0)}   # the sampler of the FashionMNIST example


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=None,
                   help="samples per point (default 500; with --precision-study the protocol's 1000)")
    p.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 50], help="numbers of sampling steps")
    p.add_argument("--batch", type=int, default=250, help="samples per forward pass")
    p.add_argument("--device", default=None, help="default: smallunet.default_device()")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="auto: bf16 autocast where it is fast (as the trainer), else fp32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "fid_vs_steps.md")
    p.add_argument("--precision-study", action="store_true",
                   help="the protocol's sampler in fp32 and bf16 (see above) instead of the table")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="sampling seeds of --precision-study")
    p.add_argument("--study-out", type=Path, default=ROOT / "bench" / "fid_vs_steps_precision.json")
    args = p.parse_args(argv)
    if args.n is None:
        args.n = PROTOCOL["n"] if args.precision_study else 500
    return args


def machine_name(device) -> str:
    """The device (smallunet.device.machine_name) and, on the CPU, the torch threads."""
    name = device_name(device)
    return name if device.type == "cuda" else f"{name}, {torch.get_num_threads()} torch threads"


def precision_study(args, model, info, device, command: str) -> dict:
    """The protocol's sampler in fp32 and bf16 autocast for each seed, scored whole and in halves."""
    import json
    ref_mu, ref_cov = reference_statistics()
    path = args.study_out
    study = json.loads(path.read_text()) if path.is_file() else {}
    settings = dict(n=args.n, batch=250, steps=PROTOCOL["steps"], gam=PROTOCOL["gam"], mu=PROTOCOL["mu"],
                    weights_sha256=info["sha256"])
    if study.get("settings") != settings:
        study = dict(settings=settings, runs={})
    sigmas = ScheduleLogLinear(N=PROTOCOL["N"], sigma_min=PROTOCOL["sigma_min"],
                               sigma_max=PROTOCOL["sigma_max"]).sample_sigmas(PROTOCOL["steps"])
    score = lambda f: round(frechet_distance(f.mean(0), np.cov(f, rowvar=False), ref_mu, ref_cov), 3)
    h = args.n // 2

    def save():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(study, indent=2) + "\n")

    kept = {}
    for seed in args.seeds:
        for precision in ("fp32", "bf16"):
            key = f"{precision} seed {seed}"
            if key in study["runs"]:
                print("already measured:", key)
                continue
            t0 = time.time()
            x = generate(model, sigmas, args.n, PROTOCOL["gam"], PROTOCOL["mu"], batch=250, seed=seed,
                         bf16=precision == "bf16").clamp(-1, 1)
            kept[key] = x
            f = features(x)
            study["runs"][key] = dict(precision=precision, seed=seed, fid=score(f), fid_first_half=score(f[:h]),
                                      fid_second_half=score(f[h:]), minutes=round((time.time() - t0) / 60, 1))
            other = f"{'bf16' if precision == 'fp32' else 'fp32'} seed {seed}"
            if other in kept:   # both precisions from the same noise: how far apart are the samples?
                study["runs"][key]["rms_to_" + other.split()[0]] = round(
                    float((x - kept[other]).pow(2).mean().sqrt()), 4)
            print(key, study["runs"][key], flush=True)
            save()
    if "floor" not in study:
        study["floor"] = {str(m): {k: round(v, 3) for k, v in protocol_floor(n=m).items() if k.endswith(("mean", "std"))}
                          for m in (args.n, h)}
    study.update(command=command, machine=machine_name(device), torch=torch.__version__,
                 checkpoint=f"the shipped {info['file']}, step {info['step']}",
                 written=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
    save()
    rows = ["| precision, sampling seed | n = {0} | first {1} | last {1} |".format(args.n, h), "|---|---:|---:|---:|"]
    for r in study["runs"].values():
        rows.append(f"| {r['precision']}, seed {r['seed']} | {r['fid']:.2f} | {r['fid_first_half']:.2f} | "
                    f"{r['fid_second_half']:.2f} |")
    fl = study["floor"]
    rows.append(f"| floor (training images, 5 draws) | {fl[str(args.n)]['fid_mean']:.2f} ± "
                f"{fl[str(args.n)]['fid_std']:.2f} | {fl[str(h)]['fid_mean']:.2f} ± {fl[str(h)]['fid_std']:.2f} | |")
    text = f"""# One sampler, several scores: precision, n and sampling seed

The protocol's sampler (smalldiffusion's: {PROTOCOL['steps']} steps, gam = {PROTOCOL['gam']}, mu = 0) on the
shipped checkpoint, in fp32 and under bf16 autocast, from the same starting noise for
each sampling seed (batches of 250, as `evaluate`); FID-like scores against all 10,000
test images. "first {h}" is the score of the first {h} samples alone: exactly the set
a run with n = {h} and the same seed draws (so `bench/fid_vs_steps.md` at n = 500, seed 0
and bf16 scores the "bf16, seed 0, first {h}" set).

{chr(10).join(rows)}

- command: `{command}`
- checkpoint: the shipped `{info['file']}`, step {info['step']}, SHA-256 `{info['sha256']}`
- machine: {study['machine']}; torch {torch.__version__}; written {study['written']}
"""
    path.with_suffix(".md").write_text(text)
    print(text)
    return study


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else default_device()
    bf16 = bf16_supported(device) if args.precision == "auto" else args.precision == "bf16"
    info = pretrained_info()
    model = load_pretrained().to(device)
    schedule = ScheduleLogLinear(N=800, sigma_min=0.01, sigma_max=20)

    command = "python scripts/fid_table.py " + " ".join(shlex.quote(str(a)) for a in (argv if argv is not None else sys.argv[1:]))
    if args.precision_study:
        precision_study(args, model, info, device, command.strip())
        return 0
    start = time.time()
    ref_stats = reference_statistics()          # the protocol's reference: all 10,000 test images
    floor = fid_floor(args.n, seed=args.seed)
    samplers = dict(SAMPLERS, **EXTRA)
    results = fid_vs_steps(model, schedule, ref_stats, steps=args.steps, n=args.n, samplers=samplers,
                           batch=args.batch, seed=args.seed, bf16=bf16)
    minutes = (time.time() - start) / 60

    machine = machine_name(device)
    text = f"""# FID against sampling steps

{args.n} samples per point, scored against all 10,000 FashionMNIST test images with the
FID-like score of `smallunet.protocol` (features of the book's FashionMNIST classifier;
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
