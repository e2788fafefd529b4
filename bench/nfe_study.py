"""How much of the score is the sampler's and how much the model's: the FID-like score
against the number of network evaluations (NFE) for four samplers on one checkpoint.

    python bench/nfe_study.py --threads 1                 # measure (resumes; skips what is done)
    python bench/nfe_study.py --report                    # only rewrite the table and plot
    python bench/nfe_study.py --weights candidates/unet_fashion/unet_fashion.safetensors

Samplers: ``samples`` with gam = 1 (DDIM), gam = 1.6 (smalldiffusion's FashionMNIST
example, the protocol's), gam = 2, all mu = 0, and ``samples_heun`` (EDM's second-order
sampler), on the protocol's log-linear levels (0.01..20, N = 800). A DDIM-family step
costs one network evaluation, a Heun step two (the levels end at sigma_min > 0, so no
step is a plain Euler step): Heun's "5 NFE" point is 3 steps, 6 NFE, and is marked so.

Every point: n = 1000 samples (the protocol's count, in batches of 250 from the same
starting noise as ``evaluate``), scored with ``frechet_distance`` against all 10,000 test
images; sampling seed 0 everywhere and seed 1 as well at 20 NFE (the spread); then
100 NFE for the two samplers best at 50. Points are measured in that order and saved
one by one to bench/nfe_study.json with the weights' SHA-256, the precision and the
minutes each took, so an interrupted run continues where it stopped; a run on other
weights or another precision starts a new study, and the old one is kept beside it as
bench/nfe_study_<first 12 hex digits of its SHA-256>_<precision>.json. ``--report`` writes bench/nfe_study.md
(table with spread and the floor) and bench/nfe_study.png from the JSON.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from smallunet import ScheduleLogLinear  # noqa: E402
from smallunet.checkpoint import read_metadata, sha256_of  # noqa: E402
from smallunet.device import bf16_supported, machine_name  # noqa: E402
from smallunet.protocol import PROTOCOL, features, floor, frechet_distance, generate, reference_statistics  # noqa: E402
from smallunet.pretrained import WEIGHTS_DIR, load_pretrained, pretrained_info  # noqa: E402

SAMPLERS = {                    # name -> (gam, mu, heun)
    "DDIM (gam 1)": (1.0, 0.0, False),
    "gam 1.6 (protocol)": (1.6, 0.0, False),
    "gam 2": (2.0, 0.0, False),
    "Heun (EDM)": (1.0, 0.0, True),
}
NFES = (5, 10, 20, 50)
OUT = ROOT / "bench" / "nfe_study.json"


def steps_for(sampler: str, nfe: int) -> tuple[int, int]:
    """(steps, actual NFE) for a sampler at a target NFE."""
    if SAMPLERS[sampler][2]:
        steps = math.ceil(nfe / 2)
        return steps, 2 * steps
    return nfe, nfe


def key(sampler: str, nfe: int, seed: int) -> str:
    return f"{sampler} | {nfe} | seed {seed}"


def plan(points: dict) -> list[tuple[str, int, int]]:
    """The points still to measure, in order: 20 NFE, 10, 5 (seed 0), seed 1 at 20 NFE,
    50 NFE, then 100 NFE for the two samplers best at 50 (once those are known)."""
    todo = [(s, nfe, 0) for nfe in (20, 10, 5) for s in SAMPLERS]
    todo += [(s, 20, 1) for s in SAMPLERS] + [(s, 50, 0) for s in SAMPLERS]
    at50 = {s: points[key(s, 50, 0)]["fid"] for s in SAMPLERS if key(s, 50, 0) in points}
    if len(at50) == len(SAMPLERS):
        todo += [(s, 100, 0) for s in sorted(at50, key=at50.get)[:2]]
    return [p for p in todo if key(*p) not in points]


def measure(model, sampler: str, nfe: int, seed: int, n: int, bf16: bool, ref) -> dict:
    gam, mu, heun = SAMPLERS[sampler]
    steps, actual = steps_for(sampler, nfe)
    sigmas = ScheduleLogLinear(N=PROTOCOL["N"], sigma_min=PROTOCOL["sigma_min"],
                               sigma_max=PROTOCOL["sigma_max"]).sample_sigmas(steps)
    t0 = time.time()
    x = generate(model, sigmas, n, gam, mu, batch=250, seed=seed, bf16=bf16, heun=heun).clamp(-1, 1)
    f = features(x)
    fid = frechet_distance(f.mean(0), np.cov(f, rowvar=False), *ref)
    return dict(sampler=sampler, nfe_target=nfe, nfe=actual, steps=steps, seed=seed, gam=gam, mu=mu,
                heun=heun, fid=round(float(fid), 3), minutes=round((time.time() - t0) / 60, 2))


def load(path: Path, settings: dict) -> dict:
    study = json.loads(path.read_text()) if path.is_file() else {}
    if study.get("settings") != settings:
        if study.get("points"):        # kept beside it, named by its weights and precision
            old = study["settings"]
            kept = path.with_name(f"{path.stem}_{old['weights_sha256'][:12]}_{old['precision']}.json")
            kept.write_text(json.dumps(study, indent=2) + "\n")
            print(f"{path} holds a study of other settings (kept as {kept.name}); starting a new one", flush=True)
        study = dict(settings=settings, points={})
    return study


def table(study: dict) -> str:
    pts = study["points"]
    nfes = sorted({p["nfe_target"] for p in pts.values()})
    rows = ["| sampler | " + " | ".join(f"{k} NFE" for k in nfes) + " |",
            "|---|" + "---:|" * len(nfes)]
    for s in SAMPLERS:
        cells = []
        for k in nfes:
            got = [p for p in pts.values() if p["sampler"] == s and p["nfe_target"] == k]
            if not got:
                cells.append("")
                continue
            v = [p["fid"] for p in got]
            cell = f"{np.mean(v):.2f}" + (f" ± {np.std(v):.2f}" if len(v) > 1 else "")
            if got[0]["nfe"] != k:
                cell += f" ({got[0]['nfe']} NFE)"
            cells.append(cell)
        rows.append(f"| {s} | " + " | ".join(cells) + " |")
    fl = study.get("floor")
    if fl:
        rows.append("| real vs real (floor) | " + " | ".join(f"{fl['fid_mean']:.2f}" for _ in nfes) + " |")
    return "\n".join(rows)


def summary(study: dict) -> dict:
    """The two numbers the targets are stated in: the best score at <= 20 NFE and the
    protocol sampler's at 20, each as a multiple of the floor."""
    pts, fl = study["points"], study["floor"]["fid_mean"]
    mean = lambda s, k: float(np.mean([p["fid"] for p in pts.values() if p["sampler"] == s and p["nfe_target"] == k]))
    measured = {(p["sampler"], p["nfe_target"]) for p in pts.values() if p["nfe"] <= 20}
    cands = {(s, k): mean(s, k) for s, k in measured}
    (bs, bk), best = min(cands.items(), key=lambda kv: kv[1])
    proto = mean("gam 1.6 (protocol)", 20)
    return dict(best_le_20_nfe=dict(sampler=bs, nfe=bk, fid=round(best, 3), ratio=round(best / fl, 2)),
                protocol_20_nfe=dict(fid=round(proto, 3), ratio=round(proto / fl, 2)), floor=fl)


def plot(study: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.8, 3.4), dpi=100)
    for s in SAMPLERS:
        by = {}
        for p in study["points"].values():
            if p["sampler"] == s:
                by.setdefault(p["nfe"], []).append(p["fid"])
        if not by:
            continue
        x = sorted(by)
        ax.errorbar(x, [np.mean(by[k]) for k in x], yerr=[np.std(by[k]) if len(by[k]) > 1 else 0 for k in x],
                    marker="o", ms=4, capsize=3, label=s)
    fl = study.get("floor")
    if fl:
        ax.axhspan(fl["fid_mean"] - fl["fid_std"], fl["fid_mean"] + fl["fid_std"], color="0.85")
        ax.axhline(fl["fid_mean"], color="0.4", lw=1, ls="--", label="floor (real vs real)")
    ax.set(xscale="log", yscale="log", xlabel="network evaluations (NFE)", ylabel="FID-like score (n = 1000)")
    ax.set_xticks(sorted({p["nfe"] for p in study["points"].values()}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=8, ncols=2)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(study: dict, path: Path, echo: bool = True) -> None:
    s = study["settings"]
    have = {(p["sampler"], p["nfe_target"]) for p in study["points"].values()}
    summ = summary(study) if study.get("floor") and ("gam 1.6 (protocol)", 20) in have else None
    text = f"""# FID against network evaluations

{s['n']} samples per point (batches of 250, the protocol's starting noise), sampled with
{s['precision']}, scored with the FID-like score against all 10,000 test images; lower is
better. Sampling seed 0 everywhere; at 20 NFE the mean ± standard deviation over seeds
{sorted({p['seed'] for p in study['points'].values() if p['nfe_target'] == 20})}. The levels are the protocol's log-linear schedule (0.01..20, N = 800);
a Heun step costs 2 NFE, so its 5-NFE column is 3 steps (6 NFE). The floor is
{s['n']} training images against the same reference (mean of {study.get('floor', {}).get('draws', '?')} draws).

{table(study)}
"""
    if summ:
        b, p = summ["best_le_20_nfe"], summ["protocol_20_nfe"]
        text += f"""
- best at ≤ 20 NFE: {b['sampler']} at {b['nfe']} NFE, {b['fid']:.2f} = {b['ratio']:.1f}× the floor
- the protocol's sampler (gam 1.6) at 20 NFE: {p['fid']:.2f} = {p['ratio']:.1f}× the floor
"""
    text += f"""
- command: `{study.get('command', '')}`
- weights: `{study['weights']}`, step {study.get('step')}, SHA-256 `{s['weights_sha256']}`
- machine: {study.get('machine')}; torch {study.get('torch')}; {sum(p['minutes'] for p in study['points'].values()):.0f} min of sampling; written {study.get('written')}
"""
    path.with_suffix(".md").write_text(text)
    plot(study, path.with_suffix(".png"))
    if echo:
        print(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=None, help="an EMA weights file (default: the shipped one)")
    p.add_argument("--n", type=int, default=PROTOCOL["n"])
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16",
                   help="sampling precision (bf16 autocast: 2.2x faster on this CPU; the study says which)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--minutes", type=float, default=None, help="start no new point after this many minutes")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--report", action="store_true", help="only write the table and plot from the JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.precision == "bf16" and not bf16_supported("cpu"):
        p.error("this CPU has no fast bf16; use --precision fp32 (a different measurement)")
    path = args.weights or WEIGHTS_DIR / pretrained_info()["file"]
    sha = sha256_of(path)
    shown = os.path.relpath(path, ROOT) if Path(path).is_absolute() else str(path)
    settings = dict(n=args.n, precision=args.precision, weights_sha256=sha)
    study = load(args.out, settings)
    study["weights"] = shown.replace(os.sep, "/")       # where the weights were read (the hash is what counts)
    if not args.report:
        model = load_pretrained(path, sha256=sha).eval()
        ref = reference_statistics()
        if "floor" not in study:
            f = floor(n=args.n)
            study["floor"] = dict(fid_mean=round(f["fid_mean"], 3), fid_std=round(f["fid_std"], 3),
                                  draws=PROTOCOL["floor_draws"])
        t0 = time.time()
        study.update(command="python bench/nfe_study.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
                     machine=f"{machine_name(torch.device('cpu'))}, {torch.get_num_threads()} torch threads",
                     torch=torch.__version__, step=int(read_metadata(path).get("step", 0)))
        while todo := plan(study["points"]):
            if args.minutes is not None and time.time() - t0 > 60 * args.minutes:
                print(f"stopping after {args.minutes} min; {len(todo)} points left", flush=True)
                break
            point = measure(model, *todo[0], n=args.n, bf16=args.precision == "bf16", ref=ref)
            study["points"][key(*todo[0])] = point
            study["written"] = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(study, indent=2) + "\n")
            print(json.dumps(point), flush=True)
            report(study, args.out, echo=False)        # the table and plot follow every point
    if study["points"] and args.report:
        report(study, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
