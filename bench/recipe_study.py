"""The recipe study: which training options give the best samples per CPU-minute.

    python bench/recipe_study.py --minutes 20 --parallel 2 --bf16            # every arm
    python bench/recipe_study.py --arms smalldiffusion lr_schedule --minutes 1 --n 64   # a quick look
    python bench/recipe_study.py --report     # rewrite recipe.md and recipe.png from recipe.json

The study ranks what pays off in the first fraction of an epoch (20 minutes per arm is
about 0.6 epochs): early training only, not where a long run ends.

Every arm trains smalldiffusion's model from scratch for the same wall-clock budget, one torch
thread each, with ``python -m smallunet``; then each arm's EMA weights are scored with
the project's protocol (``smallunet.protocol.evaluate``: FID-like score and KID at n
samples, 20 steps, gam=1.6) over ``--seeds`` sampling seeds for a spread, and the floor
at the same n. ``--parallel`` jobs run side by side, one thread each: first every arm's
training, then the scoring, which starts as soon as a slot is free, so every arm trains
beside one other one-thread job and sees the same machine. The results go to
bench/recipe.json and bench/recipe.md (table and a plot of FID against images seen,
bench/recipe.png), with the command and the machine.

The arm ``smalldiffusion`` is smalldiffusion's FashionMNIST recipe at a CPU batch of 64
(called ``seed`` in results written before it was renamed; ``--report`` and ``--arms``
still accept that name). Each other arm adds one change to it, so each is measured apart;
``all`` combines them. A cosine schedule needs its end: its arm plans the steps its budget allows at the
images/s measured by the finished arm of the same batch size and dropout
(``smalldiffusion`` for ``lr_schedule``, ``dropout0`` for ``all``), so the default order trains those first.

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

BASE = dict(batch_size=64, lr=7e-4, dropout=0.1)           # smalldiffusion's recipe at a CPU batch
COSINE = dict(lr_schedule="cosine", warmup_steps=100)       # cosine to 0 over the arm's planned steps
ARMS = {
    "smalldiffusion": {},                                   # smalldiffusion's recipe, unchanged
    "dropout0": dict(dropout=0.0),
    "sigma_mix": dict(sigma_dist="mix", sigma_mean=-0.6, sigma_std=1.2, sigma_mix=0.2),
    "min_snr": dict(loss_weight="min_snr", min_snr_gamma=5.0),
    "zero_init": dict(zero_init=True),
    "batch32": dict(batch_size=32),
    "lr_schedule": COSINE,
    "batch128": dict(batch_size=128),
    "all": dict(**COSINE, dropout=0.0, sigma_dist="mix", loss_weight="min_snr", zero_init=True),
}
OLD_NAMES = {"seed": "smalldiffusion"}      # arm names in results written before the rename


def new_name(name: str) -> str:
    return OLD_NAMES.get(name, name)


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
                cfg = {**BASE, **ARMS[name]}
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
    from smallunet import protocol
    from smallunet.pretrained import load_pretrained
    torch.set_num_threads(1)                     # one job, one thread, like the arms
    model = load_pretrained(args.out_dir / f"{name}.safetensors", sha256=None)
    t0 = time.time()
    results = [protocol.evaluate(model, n=args.n, seed=s, bf16=args.bf16, root=args.data_root)
               for s in range(args.seeds)]
    fids, kids = [r["fid"] for r in results], [r["kid"] for r in results]
    scores = dict(fid=fids, kid=kids, fid_mean=float(np.mean(fids)), fid_std=float(np.std(fids)),
                  kid_mean=float(np.mean(kids)), kid_std=float(np.std(kids)), score_wall_s=round(time.time() - t0, 1))
    (args.out_dir / f"{name}.score.json").write_text(json.dumps(dict(settings=score_settings(args), scores=scores)))


def record(done: dict, floor: dict, args, command: str) -> dict:
    """What recipe.json holds: the command, the machine, the settings and every arm."""
    import torch
    return dict(command=command, machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                                         f"1 torch thread per job, {args.parallel} jobs at a time",
                torch=torch.__version__, minutes_per_arm=args.minutes, **score_settings(args), floor=floor,
                arms=done)


def renamed(out: dict) -> dict:
    """``out`` with the arms of an older study under their current names (``seed`` is now
    ``smalldiffusion``), in the same order; nothing measured changes."""
    arms = {}
    for name, arm in out["arms"].items():
        arm = dict(arm)
        if "lr_planned_from" in arm:
            source = arm["lr_planned_from"]
            old = next((o for o in OLD_NAMES if source.endswith(f"arm {o}")), None)
            arm["lr_planned_from"] = source[:-len(old)] + OLD_NAMES[old] if old else source
        arms[new_name(name)] = arm
    return {**out, "arms": arms}


def write(out: dict, results_dir: Path) -> None:
    """recipe.json, recipe.md (the table) and recipe.png from one study's record."""
    from smallunet.protocol import PROTOCOL
    arms, floor, n = out["arms"], out["floor"], out["n"]
    base = arms.get("smalldiffusion", {}).get("fid_mean")
    sampler = (f"{PROTOCOL['steps']} steps, gam={PROTOCOL['gam']}, mu={PROTOCOL['mu']}, n={n}, sampling seeds "
               f"{', '.join(map(str, range(out['seeds'])))}, {out['precision']}")
    (results_dir / "recipe.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = ["# Recipe study", "", f"Written by `{out['command']}` on {out['machine']}, torch {out['torch']}.",
             f"Every arm: smalldiffusion's model from scratch, {out['minutes_per_arm']} min of wall clock, then "
             f"the protocol of `smallunet.protocol` ({sampler}; mean ± std over the sampling seeds: the "
             "spread of the score, not of training; each arm is one training run, seed 0).", "",
             f"The arms saw about {arms[next(iter(arms))]['images'] / 60_000:.2f} epochs each: the study ranks "
             "what pays off early in training only, not where a long run ends.", "",
             f"Floor at n={n}: FID-like {floor['fid_mean']:.2f} ± {floor['fid_std']:.2f}, "
             f"KID {floor['kid_mean']:.2f} ± {floor['kid_std']:.2f} ({floor['draws']} draws of training images).",
             "KID is the unbiased estimate of the squared MMD with the kernel (x.y/D + 1)^3 on the "
             "classifier's raw D = 128 features, not rescaled: its scale is the kernel's on these features, "
             "so only KIDs on the same features compare, and the unbiased estimate can be negative when "
             "two sets are as close as sampling noise makes them (as the floor's are).", "",
             "| arm | change to smalldiffusion's recipe | steps | images | images/s | FID-like | KID "
             "| FID vs smalldiffusion's |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, a in arms.items():
        change = ", ".join(f"{k}={v}" for k, v in ARMS[name].items()) or "(none)"
        ratio = f"{a['fid_mean'] / base:.2f}x" if base else ""
        lines.append(f"| {name} | {change} | {a['steps']} | {a['images']:,} | {a['images_per_second']} | "
                     f"{a['fid_mean']:.1f} ± {a['fid_std']:.1f} | {a['kid_mean']:.1f} ± {a['kid_std']:.1f} | {ratio} |")
    planned = [f"- `{name}`: cosine over {a['config']['lr_total_steps']} planned steps "
               f"({a['lr_planned_from']}); it ran {a['steps']}."
               for name, a in arms.items() if "lr_planned_from" in a]
    lines += ["", *planned, "", "![FID against images seen](recipe.png)", ""]
    (results_dir / "recipe.md").write_text("\n".join(lines))
    from smallunet.book.plotting.training import recipe_study
    recipe_study(out).savefig(results_dir / "recipe.png", dpi=100)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=[*ARMS, *OLD_NAMES])
    p.add_argument("--report", action="store_true",
                   help="only rewrite recipe.md and recipe.png (and the arms' names in recipe.json) "
                        "from the results dir's recipe.json; trains and scores nothing")
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
    args.arms = list(dict.fromkeys(map(new_name, args.arms)))
    if args.report:
        path = args.results_dir / "recipe.json"
        if not path.is_file():
            p.error(f"--report needs an earlier study's {path}, which does not exist")
        write(renamed(json.loads(path.read_text())), args.results_dir)
        print((args.results_dir / "recipe.md").read_text())
        return 0
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
    from smallunet import protocol
    torch.set_num_threads(args.parallel)
    floor = protocol.floor(n=args.n, root=args.data_root)
    write(record(done, floor, args, command.strip()), args.results_dir)
    print((args.results_dir / "recipe.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
