"""Branches from the shipped checkpoint: which way to go on training it.

    python bench/branch_study.py --train --steps 1200 --decay-steps 500   # every arm, side by side (resumes)
    python bench/branch_study.py --score                                  # score the arms and the shipped model
    python bench/branch_study.py --report                                 # rewrite branch_study.md and .png

Every arm continues the shipped unconditional model (its raw weights with a fresh AdamW,
and its EMA) on the same number of training images, one torch thread each, the arms
side by side so that they share the machine alike. The recipe is the shipped segments'
(batch 128, dropout 0, the 'mix' draw of noise levels, min-SNR weight, EMA 0.999) with
one change per arm; the learning rate warms up over 200 steps from the shipped step,
holds, then falls linearly to 0 over the last ``--decay-steps`` (schedule 'wsd'), so
every arm ends with settled weights. ``--steps``, ``--decay-steps`` and the warm-up count
steps of batch 128: an arm with a larger batch takes proportionally fewer steps, so that
every arm sees the same images on the same schedule of images. (The EMA is updated once
per step, so such an arm's EMA keeps more of the shipped EMA: ``ema_decay ** steps``; the
'ema 0.9995' arm keeps batch 256's share at batch 128.) A checkpoint per arm lives in
``--out-dir``; the same command resumes it, and a run stopped early can be given its decay
later (the trainer keeps every leg's command in the checkpoint, and the results quote them).

Scoring is the project's protocol (``smallunet.protocol.evaluate``: 20 steps of the
log-linear levels, gam 1.6, n = 1000 against all 10,000 test images): each arm's EMA with
sampling seeds 0 and 1, its raw weights with seed 0, and the shipped model's EMA with the
same seeds, in the same run (the baseline). The weights are scored as they would ship,
rounded to fp16. Sampling runs under bf16 autocast by default (``--fp32`` for the
protocol's own precision; the results say which). Each score is one one-thread job,
``--parallel`` at a time, cached by the weights' SHA-256 in the results file, so an
interrupted scoring continues. The winner is picked by score, not by loss.

Writes bench/branch_study.json, bench/branch_study.md (table) and bench/branch_study.png
(each arm's learning rate against the step, and the scores).
"""
from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH, WARMUP = 128, 200       # the shipped segments' batch; the re-warm, in steps of that batch
ARMS = {                       # name -> (the one change, its flags)
    "lr 7e-4": ("the shipped segments' peak rate", ["--lr", "7e-4"]),
    "lr 2e-3": ("a higher peak rate", ["--lr", "2e-3"]),
    "lr 3.5e-4": ("half the shipped rate", ["--lr", "3.5e-4"]),
    "batch 256": ("batch 256 at the shipped rate (half the steps)", ["--lr", "7e-4", "--batch-size", "256"]),
    "ema 0.9995": ("EMA 0.9995: the memory, in images, of batch 256's EMA", ["--lr", "7e-4", "--ema-decay", "0.9995"]),
}


def arm_batch(arm: str) -> int:
    flags = ARMS[arm][1]
    return int(flags[flags.index("--batch-size") + 1]) if "--batch-size" in flags else BATCH


def recipe(arm: str) -> list[str]:
    """The shipped segments' flags, the re-warm counted in the arm's own steps; the batch
    is named here unless the arm's flags change it."""
    batch = arm_batch(arm)
    head = [] if "--batch-size" in ARMS[arm][1] else ["--batch-size", str(BATCH)]
    return [*head, "--lr-schedule", "wsd", "--warmup-steps", str(WARMUP * BATCH // batch), "--dropout", "0",
            "--sigma-dist", "mix", "--sigma-mean", "-0.6", "--sigma-std", "1.2", "--sigma-mix", "0.2",
            "--loss-weight", "min_snr"]
RESULTS = ROOT / "bench" / "branch_study.json"
SEEDS_EMA, SEEDS_RAW = (0, 1), (0,)


def slug(arm: str) -> str:
    return arm.replace(" ", "_")


@functools.lru_cache(maxsize=None)          # one read of the manifest per run
def shipped_paths() -> tuple[Path, Path, dict]:
    from smallunet.pretrained import WEIGHTS_DIR, pretrained_info
    info = pretrained_info()
    return WEIGHTS_DIR / info["file"], WEIGHTS_DIR / info["raw_weights"]["file"], info


def train_command(arm: str, args, start: int) -> list[str]:
    ema, raw, _ = shipped_paths()
    per_step = arm_batch(arm) // BATCH                   # steps of batch 128 in one of the arm's
    end, decay = start + args.steps // per_step, args.decay_steps // per_step
    return [sys.executable, "-m", "smallunet", "--init-weights", os.path.relpath(raw, ROOT),
            "--init-ema", os.path.relpath(ema, ROOT),
            "--checkpoint", os.path.relpath(args.out_dir / f"{slug(arm)}.safetensors", ROOT),
            *recipe(arm), *ARMS[arm][1], "--warmup-start", str(start),
            "--decay-start", str(end - decay), "--decay-steps", str(decay),
            "--max-steps", str(end), "--threads", "1", "--minutes", str(args.minutes),
            "--save-every-minutes", "4", "--no-progress",
            *(["--data-root", args.data_root] if args.data_root else [])]


def train(args) -> None:
    """Every arm at once, one thread each; returns when all have stopped."""
    start = shipped_paths()[2]["step"]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    procs = {}
    for arm in args.arms:
        cmd = train_command(arm, args, start)
        log = open(args.out_dir / f"{slug(arm)}.log", "a")
        print(f"[{time.strftime('%H:%M:%S')}] {arm}: {shlex.join(cmd)}", flush=True)
        procs[arm] = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                      env={**os.environ, "OMP_NUM_THREADS": "1"})
    for arm, proc in procs.items():
        if proc.wait() != 0:
            raise RuntimeError(f"arm {arm!r} failed (exit {proc.returncode}); see {args.out_dir / slug(arm)}.log")
        print(f"[{time.strftime('%H:%M:%S')}] {arm} stopped", flush=True)


def arm_record(arm: str, args) -> dict | None:
    """What the arm's checkpoint says about its run, and its weights exported in fp16."""
    from smallunet.checkpoint import read_metadata, read_weights, sha256_of, write_weights
    from smallunet.runrecord import RunRecord
    from smallunet.train_config import TrainConfig
    ckpt = args.out_dir / f"{slug(arm)}.safetensors"
    if not ckpt.is_file():
        return None
    meta = read_metadata(ckpt)
    cfg, step = TrainConfig.from_json(meta["config"]), int(meta["step"])
    start = shipped_paths()[2]["step"]
    weights = args.out_dir / f"{slug(arm)}.weights.safetensors"
    if not weights.is_file() or int(read_metadata(weights).get("step", -1)) != step:
        ema, raw, _ = read_weights(ckpt)
        write_weights(weights, ema, raw, {"config": meta["config"], "step": str(step)})
    record = RunRecord.from_json(meta.get("run_legs"))
    history = json.loads(meta.get("history", "[]"))
    tail = [loss for s, loss in history if s > step - 250]
    from smallunet.train_recipe import lr_factor
    end = cfg.max_steps or step
    corners = {end, cfg.warmup_start + cfg.warmup_steps, cfg.decay_start or end}
    curve = [(s, cfg.lr * lr_factor(cfg, s)) for s in sorted(set(range(start, end + 1, 10)) | corners) if s <= end]
    return dict(change=ARMS[arm][0], lr=cfg.lr, lr_curve=[(s, float(f"{v:.4g}")) for s, v in curve], lr_schedule=cfg.lr_schedule, warmup_steps=cfg.warmup_steps,
                warmup_start=cfg.warmup_start, decay_start=cfg.decay_start, decay_steps=cfg.decay_steps,
                max_steps=cfg.max_steps, start_step=start, step=step, steps=step - start,
                images=(step - start) * cfg.batch_size, batch_size=cfg.batch_size, ema_decay=cfg.ema_decay,
                finished=cfg.max_steps is not None and step >= cfg.max_steps,
                minutes=record.summary(start)["minutes"],
                legs=[{k: leg.get(k) for k in ("start_step", "end_step", "seconds", "threads", "precision", "command")}
                      for leg in record.legs if leg["end_step"] > start],
                loss_last_250_steps=round(sum(tail) / len(tail), 5) if tail else None,
                history=[(s, round(loss, 5)) for s, loss in history if s > start],
                weights=os.path.relpath(weights, ROOT), weights_sha256=sha256_of(weights))


def score_one(path: str, kind: str, seed: int, n: int, bf16: bool, data_root) -> dict:
    import torch
    from smallunet import protocol
    from smallunet.pretrained import load_pretrained
    torch.set_num_threads(1)
    model = load_pretrained(path, sha256=None, weights=kind)
    t0 = time.time()
    r = protocol.evaluate(model, n=n, seed=seed, bf16=bf16, root=data_root)
    return dict(fid=round(r["fid"], 3), kid=round(r["kid"], 3), minutes=round((time.time() - t0) / 60, 2))


def settings(args) -> dict:
    from smallunet.protocol import PROTOCOL
    return dict(n=args.n, steps=PROTOCOL["steps"], gam=PROTOCOL["gam"], mu=PROTOCOL["mu"],
                precision="fp32" if args.fp32 else "bf16 autocast", weights_dtype="float16")


def score(study: dict, args) -> dict:
    """Every score the study lacks, ``args.parallel`` one-thread jobs at a time, saved one by one."""
    entries = {"shipped": study["shipped"]}
    entries.update({arm: study["arms"][arm] for arm in study["arms"] if study["arms"][arm]["finished"]})
    jobs = []
    for name, e in entries.items():
        for kind, seeds in (("ema", SEEDS_EMA), ("model", SEEDS_RAW)):
            if name == "shipped" and kind == "model":
                continue
            for seed in seeds:
                key = f"{e['weights_sha256']} | {kind} | seed {seed}"
                if key not in study["scores"]:
                    jobs.append((key, e["weights"], kind, seed))
    running = []
    while jobs or running:
        while jobs and len(running) < args.parallel:
            key, path, kind, seed = jobs.pop(0)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--score-one", path, kind, str(seed),
                   "--n", str(args.n)]
            cmd += (["--fp32"] if args.fp32 else []) + (["--data-root", args.data_root] if args.data_root else [])
            running.append((key, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                                  env={**os.environ, "OMP_NUM_THREADS": "1"})))
            print(f"[{time.strftime('%H:%M:%S')}] scoring {key}", flush=True)
        time.sleep(2)
        for key, proc in list(running):
            if proc.poll() is None:
                continue
            running.remove((key, proc))
            out = proc.stdout.read()
            if proc.returncode != 0:
                raise RuntimeError(f"scoring {key} failed (exit {proc.returncode})")
            study["scores"][key] = json.loads(out.strip().splitlines()[-1])
            print(f"[{time.strftime('%H:%M:%S')}] {key}: {study['scores'][key]}", flush=True)
            save(study, args.results)
    return study


def save(study: dict, path: Path) -> None:
    study["written"] = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    path.write_text(json.dumps(study, indent=1) + "\n")


def report(study: dict, path: Path) -> str:
    from smallunet.book.results import branch_scores
    s, summ = study["settings"], branch_scores(study)
    fl = study.get("floor")
    lines = ["# Branches from the shipped checkpoint", "",
             f"Every arm continues the shipped model (step {study['shipped']['step']}, EMA SHA-256 "
             f"`{study['shipped']['weights_sha256'][:12]}…`) with the shipped segments' recipe and one change, "
             "on the same number of training images, one torch thread each, side by side; the learning rate "
             f"re-warms over the first {WARMUP * BATCH:,} images, holds, and falls linearly to 0 at the end "
             "(an arm with a larger batch takes proportionally fewer steps on the same schedule of images).",
             f"Scores: the protocol ({s['steps']} steps, gam {s['gam']}, n = {s['n']} against the 10,000 test "
             f"images, {s['precision']} sampling, weights rounded to fp16 as shipped); EMA: mean ± std over "
             f"sampling seeds {', '.join(map(str, SEEDS_EMA))}; raw: seed 0. The shipped model is scored in the "
             "same run." + (f" Floor (training images against the same reference): {fl['fid_mean']:.2f}." if fl else ""),
             "", "| arm | change | steps | images | minutes | loss (last 250 steps) | EMA FID-like | raw FID-like |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    rows = summ["rows"]
    if "shipped" in rows:
        r = rows["shipped"]
        lines.append(f"| shipped | (the starting point) | | | | | {r['ema_mean']:.2f} ± {r['ema_std']:.2f} | |")
    for arm, a in study["arms"].items():
        r = rows.get(arm)
        ema = f"{r['ema_mean']:.2f} ± {r['ema_std']:.2f}" if r else "not scored"
        raw = f"{r['raw']:.2f}" if r and r["raw"] is not None else ""
        lines.append(f"| {arm} | {a['change']} | {a['steps']} | {a['images']:,} | {a['minutes']} | "
                     f"{a['loss_last_250_steps']} | {ema} | {raw} |")
    if summ["winner"]:
        w, base = summ["winner"], rows.get("shipped")
        lines += ["", f"Winner by the EMA's score: **{w}** ({rows[w]['ema_mean']:.2f}"
                  + (f", against the shipped model's {base['ema_mean']:.2f}" if base else "") + ")."]
    lines += ["", "Commands (each arm's legs, from the run record in its checkpoint):", ""]
    for arm, a in study["arms"].items():
        for leg in a["legs"]:
            lines.append(f"- {arm}, steps {leg['start_step']}-{leg['end_step']}, {leg['seconds'] / 60:.1f} min, "
                         f"{leg['threads']} thread(s), {leg['precision']}: `{leg['command']}`")
    lines += ["", f"- study command: `{study.get('command', '')}`",
              f"- machine: {study.get('machine')}; torch {study.get('torch')}; written {study.get('written')}",
              "", "![learning rate and scores](branch_study.png)", ""]
    text = "\n".join(lines)
    path.with_suffix(".md").write_text(text)
    plot(study, path.with_suffix(".png"))
    return text


def plot(study: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from smallunet.book.plotting.training import branch_study
    from smallunet.book.results import branch_scores
    fig = branch_study(study, branch_scores(study))
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", action="store_true", help="train (or resume) every arm, side by side")
    p.add_argument("--score", action="store_true", help="score every finished arm and the shipped model")
    p.add_argument("--report", action="store_true", help="only rewrite the table and the plot")
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS),
                   help="the arms to train (default all; scoring takes every finished arm)")
    p.add_argument("--steps", type=int, default=1200,
                   help="optimizer steps of batch 128 per arm, from the shipped step (fewer at a larger batch)")
    p.add_argument("--decay-steps", type=int, default=500,
                   help="the last steps (of batch 128), where the rate falls to 0")
    p.add_argument("--minutes", type=float, default=120, help="wall-clock cap per arm, this invocation")
    p.add_argument("--parallel", type=int, default=2, help="scoring jobs at once (one thread each)")
    p.add_argument("--fp32", action="store_true", help="sample in fp32 (the protocol's precision; 2.2x slower here)")
    p.add_argument("--n", type=int, default=None, help="samples per score (default the protocol's 1000)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--results", type=Path, default=RESULTS, help="the JSON; the .md and .png go beside it")
    p.add_argument("--out-dir", type=Path, default=ROOT / "runs" / "branches")
    p.add_argument("--score-one", nargs=3, metavar=("WEIGHTS", "KIND", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from smallunet.protocol import PROTOCOL
    args.n = args.n or PROTOCOL["n"]
    if args.score_one:
        path, kind, seed = args.score_one
        print(json.dumps(score_one(path, kind, int(seed), args.n, not args.fp32, args.data_root)))
        return 0
    if not 0 < args.decay_steps <= args.steps:
        p.error(f"need 0 < --decay-steps <= --steps; got {args.decay_steps} and {args.steps}")
    if args.train:
        train(args)
    study = json.loads(args.results.read_text()) if args.results.is_file() else {}
    if study.get("settings") != settings(args) or study.get("start_step") != shipped_paths()[2]["step"]:
        study = dict(settings=settings(args), start_step=shipped_paths()[2]["step"], scores={})
    if not args.report:
        import torch
        from smallunet.device import machine_name
        ema, _, info = shipped_paths()
        study["shipped"] = dict(weights=os.path.relpath(ema, ROOT), weights_sha256=info["sha256"], step=info["step"])
        study["arms"] = {arm: rec for arm in ARMS if (rec := arm_record(arm, args))}
        study.update(command="python bench/branch_study.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
                     machine=f"{machine_name(torch.device('cpu'))}, 1 torch thread per job", torch=torch.__version__)
        if args.score:
            if "floor" not in study:
                from smallunet.protocol import floor
                f = floor(n=args.n, root=args.data_root)
                study["floor"] = dict(fid_mean=round(f["fid_mean"], 3), fid_std=round(f["fid_std"], 3))
            study = score(study, args)
        save(study, args.results)
    if "shipped" in study:
        print(report(study, args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
