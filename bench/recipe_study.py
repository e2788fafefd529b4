"""The recipe study: which training options give the best samples per CPU-minute.

    python bench/recipe_study.py --minutes 20 --parallel 2 --bf16            # every arm
    python bench/recipe_study.py --arms seed lr_schedule --minutes 1 --n 64   # a quick look

Every arm trains the seed's model from scratch for the same wall-clock budget, one torch
thread each, with ``python -m smallunet``; then each arm's EMA weights are scored with
the project's protocol (``smallunet.evaluation.evaluate``: FID-like score and KID at n
samples, 20 steps, gam=1.6) over ``--seeds`` sampling seeds for a spread, and the floor
at the same n. ``--parallel`` jobs run side by side, one thread each: first every arm's
training, then the scoring, which starts as soon as a slot is free, so every arm trains
beside one other one-thread job and sees the same machine. The results go to
bench/recipe.json and bench/recipe.md (table and a plot of FID against images seen,
bench/recipe.png), with the command and the machine.

Each arm adds one change to the seed recipe, so each is measured apart; ``all`` combines
them. A cosine schedule needs its end: its arm plans the steps its budget allows at the
images/s measured by the finished arm of the same batch size and dropout (``seed`` for
``lr_schedule``, ``dropout0`` for ``all``), so the default order trains those first.

An interrupted study continues where it stopped: an arm whose training (or scoring) ran
to the end with the same settings is not run again (``--fresh`` runs everything anew).
Nothing here is typed by hand: re-run the command to refresh the files.
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
COSINE = dict(lr_schedule="cosine", warmup_steps=100)       # cosine to 0 over the arm's planned steps
ARMS = {
    "seed": {},
    "dropout0": dict(dropout=0.0),
    "sigma_mix": dict(sigma_dist="mix", sigma_mean=-0.6, sigma_std=1.2, sigma_mix=0.2),
    "min_snr": dict(loss_weight="min_snr", min_snr_gamma=5.0),
    "zero_init": dict(zero_init=True),
    "batch32": dict(batch_size=32),
    "lr_schedule": COSINE,
    "batch128": dict(batch_size=128),
    "all": dict(**COSINE, dropout=0.0, sigma_dist="mix", loss_weight="min_snr", zero_init=True),
}


def flags(cfg: dict) -> list[str]:
    out = []
    for k, v in cfg.items():
        out += ["--" + k.replace("_", "-"), ",".join(map(str, v)) if isinstance(v, tuple) else str(v)]
    return out


def planned_steps(minutes: float, batch: int, images_per_second: float) -> int:
    """A cosine schedule needs its end: the steps the budget allows at the measured rate."""
    return max(10, int(minutes * 60 * images_per_second / batch))


def planning_rate(cfg: dict, done: dict, fallback: float) -> tuple[float, str]:
    """images/s to plan a cosine arm with: that of a finished arm with the same batch size
    and dropout (what sets the speed), else ``fallback``; and where the rate came from."""
    for name, arm in done.items():
        if "lr_schedule" not in arm["config"] and all(arm["config"][k] == cfg[k] for k in ("batch_size", "dropout")):
            return arm["images_per_second"], f"measured by arm {name}"
    return fallback, "--rate"


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def train_command(name: str, cfg: dict, args) -> list[str]:
    out = args.out_dir
    cmd = [sys.executable, "-m", "smallunet", *flags(cfg), "--minutes", str(args.minutes),
           "--threads", "1", "--no-progress", "--seed", "0", "--save-every", str(max(args.minutes, 1)),
           "--checkpoint", str(out / f"{name}.ckpt.safetensors"), "--export", str(out / f"{name}.safetensors")]
    return cmd + (["--data-root", args.data_root] if args.data_root else [])


def score_command(name: str, args) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--score-arm", name, "--n", str(args.n),
           "--seeds", str(args.seeds), "--out-dir", str(args.out_dir)]
    return cmd + (["--bf16"] if args.bf16 else []) + (["--data-root", args.data_root] if args.data_root else [])


def score_settings(args) -> dict:
    return dict(n=args.n, seeds=args.seeds, precision="bf16 autocast" if args.bf16 else "fp32")


def run_study(names, args) -> dict:
    """Train every arm, then score it, ``args.parallel`` one-thread jobs at a time."""
    out, done, running = args.out_dir, {}, {}
    pending_train, pending_score = list(names), []
    for name in names:                                     # what an earlier run finished
        prev = None if args.fresh else read_json(out / f"{name}.train.json")
        if prev and prev["minutes"] == args.minutes and prev["arm"] == ARMS[name]:
            done[name] = prev["record"]
            pending_train.remove(name)
            pending_score.append(name)
    while pending_train or pending_score or running:
        while len(running) < args.parallel and (pending_train or pending_score):
            if pending_train:
                name, kind = pending_train.pop(0), "train"
                cfg = {**SEED, **ARMS[name]}
                if cfg.get("lr_schedule") == "cosine":
                    rate, source = planning_rate(cfg, done, args.rate)
                    cfg["lr_total_steps"] = planned_steps(args.minutes, cfg["batch_size"], rate)
                    planned = f"{rate} images/s, {source}"
                else:
                    planned = None
                cmd = train_command(name, cfg, args)
                (out / f"{name}.ckpt.safetensors").unlink(missing_ok=True)   # never resume a cut-off arm
            else:
                name, kind, cfg, planned = pending_score.pop(0), "score", None, None
                prev = None if args.fresh else read_json(out / f"{name}.score.json")
                if prev and prev["settings"] == score_settings(args):
                    done[name].update(prev["scores"])
                    continue
                cmd = score_command(name, args)
            log = open(out / f"{name}.{kind}.log", "w")
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            running[name, kind] = (proc, cfg, cmd, time.time(), planned)
            print(f"[{time.strftime('%H:%M:%S')}] started {kind} {name}", flush=True)
        time.sleep(2)
        for (name, kind), (proc, cfg, cmd, t0, planned) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name, kind]
            if proc.returncode != 0:
                raise RuntimeError(f"{kind} of arm {name} failed (exit {proc.returncode}); "
                                   f"see {out / f'{name}.{kind}.log'}")
            print(f"[{time.strftime('%H:%M:%S')}] finished {kind} {name}", flush=True)
            if kind == "train":
                summary = json.loads((out / f"{name}.train.log").read_text().strip().splitlines()[-1])
                done[name] = dict(config=cfg, command=shlex.join(cmd), wall_s=round(time.time() - t0, 1),
                                  steps=summary["total_steps"], images=summary["total_steps"] * cfg["batch_size"],
                                  images_per_second=summary["images_per_second"], last_loss=summary["last_loss"])
                if planned:
                    done[name]["lr_planned_from"] = planned
                (out / f"{name}.train.json").write_text(json.dumps(
                    dict(minutes=args.minutes, arm=ARMS[name], record=done[name]), indent=1))
                pending_score.append(name)
            else:
                done[name].update(read_json(out / f"{name}.score.json")["scores"])
    return {name: done[name] for name in names}


def score_arm(name: str, args) -> None:
    """One arm's scores over ``args.seeds`` sampling seeds, to ``<out-dir>/<name>.score.json``."""
    import numpy as np
    import torch
    from smallunet import evaluation
    from smallunet.pretrained import load_pretrained
    torch.set_num_threads(1)                     # one job, one thread, like the arms
    model = load_pretrained(args.out_dir / f"{name}.safetensors", sha256=None)
    t0 = time.time()
    results = [evaluation.evaluate(model, n=args.n, seed=s, bf16=args.bf16, root=args.data_root)
               for s in range(args.seeds)]
    fids, kids = [r["fid"] for r in results], [r["kid"] for r in results]
    scores = dict(fid=fids, kid=kids, fid_mean=float(np.mean(fids)), fid_std=float(np.std(fids)),
                  kid_mean=float(np.mean(kids)), kid_std=float(np.std(kids)), score_wall_s=round(time.time() - t0, 1))
    (args.out_dir / f"{name}.score.json").write_text(json.dumps(dict(settings=score_settings(args), scores=scores)))


def write(done: dict, floor: dict, args, command: str) -> None:
    import torch
    base = done.get("seed", {}).get("fid_mean")
    settings = score_settings(args)
    out = dict(command=command, machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                                        f"1 torch thread per job, {args.parallel} jobs at a time",
               torch=torch.__version__, minutes_per_arm=args.minutes, **settings, floor=floor, arms=done)
    (args.results_dir / "recipe.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = ["# Recipe study", "", f"Written by `{command}` on {out['machine']}, torch {out['torch']}.",
             f"Every arm: the seed's model from scratch, {args.minutes} min of wall clock, then the protocol "
             f"of `smallunet.evaluation` ({settings['precision']}) at n={args.n} over {args.seeds} sampling "
             "seed(s) (mean ± std over the seeds: the spread of the score, not of training; each arm is one "
             "training run, seed 0).", "",
             f"Floor at n={args.n}: FID-like {floor['fid_mean']:.2f} ± {floor['fid_std']:.2f}, "
             f"KID {floor['kid_mean']:.2f} ± {floor['kid_std']:.2f} ({floor['draws']} draws of training images).", "",
             "| arm | change to the seed recipe | steps | images | images/s | FID-like | KID | FID vs seed |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, a in done.items():
        change = ", ".join(f"{k}={v}" for k, v in ARMS[name].items()) or "(none)"
        ratio = f"{a['fid_mean'] / base:.2f}x" if base else ""
        lines.append(f"| {name} | {change} | {a['steps']} | {a['images']:,} | {a['images_per_second']} | "
                     f"{a['fid_mean']:.1f} ± {a['fid_std']:.1f} | {a['kid_mean']:.1f} ± {a['kid_std']:.1f} | {ratio} |")
    planned = [f"- `{name}`: cosine over {a['config']['lr_total_steps']} planned steps "
               f"({a['lr_planned_from']}); it ran {a['steps']}."
               for name, a in done.items() if "lr_planned_from" in a]
    lines += ["", *planned, "", "The sampler's gam and number of steps, swept on the final EMA of the recipe "
              "the shipped checkpoint was trained with: `fid_vs_steps.md` (written by `scripts/fid_table.py`).",
              "", "![FID against images seen](recipe.png)", ""]
    (args.results_dir / "recipe.md").write_text("\n".join(lines))
    from smallunet.book.plotting.training import recipe_study
    recipe_study(out).savefig(args.results_dir / "recipe.png", dpi=100)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget per arm")
    p.add_argument("--parallel", type=int, default=2, help="jobs at once (one thread each)")
    p.add_argument("--rate", type=float, default=25.0,
                   help="images/s per arm to plan a cosine schedule's end when no finished arm measured it")
    p.add_argument("--n", type=int, default=1000, help="samples per score")
    p.add_argument("--seeds", type=int, default=2, help="sampling seeds per arm, for the spread")
    p.add_argument("--bf16", action="store_true", help="sample under bf16 autocast (default fp32)")
    p.add_argument("--fresh", action="store_true", help="run every arm anew, even those an earlier run finished")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out-dir", type=Path, default=ROOT / "runs" / "recipe_study", help="checkpoints and logs")
    p.add_argument("--results-dir", type=Path, default=ROOT / "bench", help="recipe.json, .md, .png")
    p.add_argument("--score-arm", choices=list(ARMS), help=argparse.SUPPRESS)   # one scoring job (internal)
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.parallel < 1 or args.n < 2 or args.seeds < 1:
        p.error(f"need --minutes > 0, --parallel >= 1, --n >= 2, --seeds >= 1; got "
                f"{args.minutes}, {args.parallel}, {args.n}, {args.seeds}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.score_arm:
        score_arm(args.score_arm, args)
        return 0
    command = "python bench/recipe_study.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    done = run_study(args.arms, args)
    import torch
    from smallunet import evaluation
    torch.set_num_threads(args.parallel)
    floor = evaluation.floor(n=args.n, root=args.data_root)
    write(done, floor, args, command.strip())
    print((args.results_dir / "recipe.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
