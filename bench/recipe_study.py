"""The recipe study: which training options give the best samples per CPU-minute.

    python bench/recipe_study.py --minutes 30 --parallel 2                # every arm
    python bench/recipe_study.py --arms seed lr_schedule --minutes 1 --n 64   # a quick look

Every arm trains the seed's model from scratch for the same wall-clock budget, one torch
thread each, ``--parallel`` arms side by side (so that arms running together see the
same machine), with ``python -m smallunet``; then each arm's EMA weights are scored with
the project's protocol (``smallunet.evaluation.evaluate``: FID-like score and KID at n
samples, 20 steps, gam=1.6), over ``--seeds`` sampling seeds for a spread, and the
floor at the same n. The results go to bench/recipe.json and bench/recipe.md (table and
a plot of FID against images seen, bench/recipe.png), with the command and the machine.
Each arm adds one change to the seed recipe, so each is measured apart; ``all`` combines
them. Nothing here is typed by hand: re-run the command to refresh the files.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED = dict(batch_size=64, lr=7e-4, dropout=0.1)           # the seed recipe at a CPU batch
ARMS = {
    "seed": {},
    "lr_schedule": dict(lr_schedule="cosine", warmup_steps=100),   # cosine to 0 over the arm's steps
    "dropout0": dict(dropout=0.0),
    "sigma_mix": dict(sigma_dist="mix", sigma_mean=-0.6, sigma_std=1.2, sigma_mix=0.2),
    "min_snr": dict(loss_weight="min_snr", min_snr_gamma=5.0),
    "zero_init": dict(zero_init=True),
    "batch32": dict(batch_size=32),
    "batch128": dict(batch_size=128),
    "all": dict(lr_schedule="cosine", warmup_steps=100, dropout=0.0, sigma_dist="mix",
                loss_weight="min_snr", zero_init=True),
}


def flags(cfg: dict) -> list[str]:
    out = []
    for k, v in cfg.items():
        out += ["--" + k.replace("_", "-"), ",".join(map(str, v)) if isinstance(v, tuple) else str(v)]
    return out


def planned_steps(minutes: float, batch: int, images_per_second: float) -> int:
    """A cosine schedule needs its end: the steps the budget allows at the measured rate."""
    return max(10, int(minutes * 60 * images_per_second / batch))


def train_arms(names, args, out_dir: Path) -> dict:
    runs, done = {}, {}
    queue = list(names)
    while queue or runs:
        while queue and len(runs) < args.parallel:
            name = queue.pop(0)
            cfg = {**SEED, **ARMS[name]}
            if cfg.get("lr_schedule") == "cosine":
                cfg["lr_total_steps"] = planned_steps(args.minutes, cfg["batch_size"], args.rate)
            cmd = [sys.executable, "-m", "smallunet", *flags(cfg), "--minutes", str(args.minutes),
                   "--threads", "1", "--no-progress", "--seed", "0", "--save-every", str(max(args.minutes, 1)),
                   "--checkpoint", str(out_dir / f"{name}.ckpt.safetensors"),
                   "--export", str(out_dir / f"{name}.safetensors")]
            if args.data_root:
                cmd += ["--data-root", args.data_root]
            log = open(out_dir / f"{name}.log", "w")
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            runs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), cfg, cmd, time.time())
        time.sleep(2)
        for name in list(runs):
            proc, cfg, cmd, t0 = runs[name]
            if proc.poll() is not None:
                if proc.returncode != 0:
                    raise RuntimeError(f"arm {name} failed (exit {proc.returncode}); see {out_dir / (name + '.log')}")
                summary = json.loads((out_dir / f"{name}.log").read_text().strip().splitlines()[-1])
                done[name] = dict(config=cfg, command=shlex.join(cmd), wall_s=round(time.time() - t0, 1),
                                  steps=summary["total_steps"], images=summary["total_steps"] * cfg["batch_size"],
                                  images_per_second=summary["images_per_second"], last_loss=summary["last_loss"])
                del runs[name]
    return done


def score(done: dict, args, out_dir: Path) -> dict:
    import numpy as np
    import torch
    from smallunet import evaluation
    from smallunet.pretrained import load_pretrained
    torch.set_num_threads(args.eval_threads)
    for name, arm in done.items():
        model = load_pretrained(out_dir / f"{name}.safetensors", sha256=None)
        results = [evaluation.evaluate(model, n=args.n, seed=s) for s in range(args.seeds)]
        arm["fid"] = [r["fid"] for r in results]
        arm["kid"] = [r["kid"] for r in results]
        arm["fid_mean"], arm["fid_std"] = float(np.mean(arm["fid"])), float(np.std(arm["fid"]))
        arm["kid_mean"], arm["kid_std"] = float(np.mean(arm["kid"])), float(np.std(arm["kid"]))
    return evaluation.floor(n=args.n, draws=max(2, args.seeds))


def write(done: dict, floor: dict, args, command: str) -> None:
    import torch
    base = done.get("seed", {}).get("fid_mean")
    out = dict(command=command, machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                                        f"1 torch thread per arm, {args.parallel} arms at a time",
               torch=torch.__version__, minutes_per_arm=args.minutes, n=args.n, seeds=args.seeds,
               floor=floor, arms=done)
    (args.results_dir / "recipe.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = ["# Recipe study", "", f"Written by `{command}` on {out['machine']}, torch {out['torch']}.",
             f"Every arm: the seed's model from scratch, {args.minutes} min of wall clock, then the protocol "
             f"of `smallunet.evaluation` at n={args.n} over {args.seeds} sampling seed(s) (mean ± std).", "",
             f"Floor at n={args.n}: FID-like {floor['fid_mean']:.2f} ± {floor['fid_std']:.2f}, "
             f"KID {floor['kid_mean']:.4f} ± {floor['kid_std']:.4f}.", "",
             "| arm | change to the seed recipe | steps | images | images/s | FID-like | KID | FID vs seed |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, a in done.items():
        change = ", ".join(f"{k}={v}" for k, v in ARMS[name].items()) or "(none)"
        ratio = f"{a['fid_mean'] / base:.2f}x" if base else ""
        lines.append(f"| {name} | {change} | {a['steps']} | {a['images']:,} | {a['images_per_second']} | "
                     f"{a['fid_mean']:.1f} ± {a['fid_std']:.1f} | {a['kid_mean']:.4f} ± {a['kid_std']:.4f} | {ratio} |")
    lines += ["", "![FID against images seen](recipe.png)", ""]
    (args.results_dir / "recipe.md").write_text("\n".join(lines))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for name, a in done.items():
        ax.errorbar(a["images"], a["fid_mean"], yerr=a["fid_std"], fmt="o", label=name)
    ax.axhline(floor["fid_mean"], ls="--", c="k", lw=1, label="floor")
    ax.set(xlabel="training images seen", ylabel=f"FID-like (n={args.n})", yscale="log")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.results_dir / "recipe.png", dpi=100)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget per arm")
    p.add_argument("--parallel", type=int, default=2, help="arms trained at once (one thread each)")
    p.add_argument("--rate", type=float, default=25.0,
                   help="expected images/s per arm, to plan the cosine schedule's end")
    p.add_argument("--n", type=int, default=1000, help="samples per score")
    p.add_argument("--seeds", type=int, default=2, help="sampling seeds per arm, for the spread")
    p.add_argument("--eval-threads", type=int, default=2)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out-dir", type=Path, default=ROOT / "runs" / "recipe_study", help="checkpoints and logs")
    p.add_argument("--results-dir", type=Path, default=ROOT / "bench", help="recipe.json, .md, .png")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.parallel < 1 or args.n < 2 or args.seeds < 1:
        p.error(f"need --minutes > 0, --parallel >= 1, --n >= 2, --seeds >= 1; got {args.minutes}, "
                f"{args.parallel}, {args.n}, {args.seeds}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    command = "python bench/recipe_study.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    done = train_arms(args.arms, args, args.out_dir)
    floor = score(done, args, args.out_dir)
    write(done, floor, args, command.strip())
    print((args.results_dir / "recipe.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
