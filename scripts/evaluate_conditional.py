"""Measure the conditional checkpoint against the guidance scale, and record it.

    python scripts/evaluate_conditional.py --write --threads 2 --bf16    # the shipped unet_fashion_cond
    python scripts/evaluate_conditional.py --weights runs/c.safetensors   # any weights, print only

For every guidance scale (``samples(..., cfg_scale=s, cond=labels)``, smalldiffusion's
convention eps_c + s (eps_c - eps_u)), ``n_per_class`` samples of each of the ten
classes, from the same starting noise at every scale, with the protocol's sampler
(20 steps of ScheduleLogLinear(N=800, 0.01..20), gam=1.6, seed 0), scored with
``smallunet.guidance.score_classes``: the share that the project's classifier assigns to
the class asked for (overall and per class), the FID-like score pooled over classes
(against all 10,000 test images) and per class (against the 1,000 test images of the
class), and KID. Beside them, the same numbers for real training images
(``class_floor``, mean and spread over draws) and the nearest training image of every
sample at the recommended scale against that of real test images.

Writes bench/guidance.json (everything, with the weights' SHA-256, the machine and the
command), bench/guidance.md (the table, generated from the JSON) and bench/guidance.png
(accuracy and FID against the scale). With --write, the recommended scale (the lowest
pooled FID among the scales with accuracy >= 90 % and every class >= 80 %) and its
metrics go into smallunet/weights/NAME.json, with ``weights_sha256``; the script refuses
to write metrics for any file but the one the manifest names.
"""
import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from smallunet import guidance  # noqa: E402
from smallunet.checkpoint import sha256_of  # noqa: E402
from smallunet.data import CLASS_NAMES  # noqa: E402
from smallunet.data import load_fashion_mnist  # noqa: E402
from smallunet.device import cpu_name  # noqa: E402
from smallunet.pretrained import WEIGHTS_DIR, load_pretrained, pretrained_info  # noqa: E402
from evaluate_pretrained import replace_readme_block  # noqa: E402  (this script's folder is on sys.path)

COND_NAME = "unet_fashion_cond"


def memorisation(images: torch.Tensor) -> dict:
    """Nearest training image of every sample, against that of real test images."""
    x_train, _ = load_fashion_mnist("train")
    x_test, _ = load_fashion_mnist("test")
    _, d_samples = guidance.nearest_neighbours(images.clamp(-1, 1), x_train)
    _, d_test = guidance.nearest_neighbours(x_test[:len(images)], x_train)
    low = float(np.percentile(d_test.numpy(), 1))
    return dict(sample_nn_median=float(d_samples.median()), test_nn_median=float(d_test.median()),
                test_nn_p1=low, share_below_test_p1=float((d_samples < low).float().mean()),
                sample_nn_min=float(d_samples.min()), n=len(images))


def markdown(out: dict) -> str:
    fl = out["floor"]
    lines = [f"# Classifier-free guidance: fidelity against quality ({out['name']})", "",
             f"Written by `{out['command']}` on {out['machine']} in {out['seconds']:.0f} s, for the weights "
             f"with SHA-256 `{out['weights_sha256'][:16]}…` (step {out['step']}, {out['images_seen']:,} images seen). "
             f"{out['n_per_class']} samples per class at every scale (20 steps, gam=1.6, seed 0); accuracy is the "
             f"share that the project's classifier assigns to the class asked for; FID-like scores use its features "
             f"(pooled: all {10 * out['n_per_class']} samples against all 10,000 test images; per class: against the "
             f"1,000 test images of the class, averaged over classes).", "",
             "| guidance scale | accuracy | worst class | FID-like, pooled | FID-like, per class (mean) | KID |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in out["results"]:
        worst = int(np.argmin(r["per_class_accuracy"]))
        mark = " **(recommended)**" if r["cfg_scale"] == out["recommended_cfg_scale"] else ""
        lines.append(f"| {r['cfg_scale']:g}{mark} | {r['accuracy']:.1%} | {r['min_class_accuracy']:.1%} "
                     f"({CLASS_NAMES[worst]}) | {r['fid']:.1f} | {r['fid_class_mean']:.1f} | {r['kid']:.1f} |")
    lines.append(f"| real training images ({fl['draws']} draws) | {fl['accuracy']:.1%} ± {fl['accuracy_std']:.1%} | "
                 f"{fl['min_class_accuracy']:.1%} | {fl['fid']:.2f} ± {fl['fid_std']:.2f} | "
                 f"{fl['fid_class_mean']:.2f} ± {fl['fid_class_mean_std']:.2f} | {fl['kid']:.1f} |")
    mem = out["memorisation"]
    lines += ["", f"Recommended scale: **{out['recommended_cfg_scale']}** (the lowest pooled FID among the scales whose "
                  f"accuracy is at least 90 % and every class at least 80 %).", "",
              f"Copies? The nearest training image of each of the {mem['n']} samples at the recommended scale lies at a "
              f"median RMS pixel distance of {mem['sample_nn_median']:.3f} (closest {mem['sample_nn_min']:.3f}); "
              f"for {mem['n']} real test images it is {mem['test_nn_median']:.3f}, and "
              f"{mem['share_below_test_p1']:.1%} of the samples are nearer to a training image than the 1 % "
              f"nearest test images are ({mem['test_nn_p1']:.3f}).", "",
              "![accuracy and FID against the guidance scale](guidance.png)", ""]
    return "\n".join(lines)


def figure(out: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from smallunet.book.plotting.conditioning import plot_guidance_tradeoff
    fig = plot_guidance_tradeoff(out)
    fig.savefig(path, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default=COND_NAME, help="shipped checkpoint (default %(default)s)")
    p.add_argument("--weights", type=Path, default=None, help="a weights file instead of the shipped one")
    p.add_argument("--scales", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0])
    p.add_argument("--n-per-class", type=int, default=100)
    p.add_argument("--floor-draws", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--bf16", action="store_true", help="sample under bf16 autocast (default fp32)")
    p.add_argument("--write", action="store_true", help="record the metrics in the manifest")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "guidance.json",
                   help="the JSON (the .md and .png go beside it)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = pretrained_info(args.name)
    path = args.weights or WEIGHTS_DIR / info["file"]
    sha = sha256_of(path)
    if args.write and sha != info["sha256"]:
        p.error(f"--write records metrics for the shipped {info['file']} (SHA-256 {info['sha256']}), "
                f"but {path} has SHA-256 {sha}: export it first (scripts/export_pretrained.py)")
    model = load_pretrained(path, sha256=sha)

    t0 = time.time()
    sweep = guidance.guidance_sweep(model, args.scales, args.n_per_class, bf16=args.bf16,
                                    progress=True, keep_images=True)
    rec = guidance.recommend_scale(sweep)
    chosen = next(r for r in sweep["results"] if r["cfg_scale"] == (rec if rec is not None else max(args.scales)))
    mem = memorisation(chosen["images"])
    fl = guidance.class_floor(args.n_per_class, draws=args.floor_draws)
    seconds = time.time() - t0
    for r in sweep["results"]:
        r.pop("images")
    cmd = "python scripts/evaluate_conditional.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = dict(name=args.name, weights_sha256=sha, step=info["step"], images_seen=info["images_seen"],
               command=cmd.strip(), machine=f"{cpu_name()}, {torch.get_num_threads()} torch threads",
               platform=platform.machine(), precision="bf16 autocast" if args.bf16 else "fp32",
               seconds=round(seconds, 1), n_per_class=args.n_per_class, steps=sweep["steps"], gam=sweep["gam"],
               mu=sweep["mu"], seed=sweep["seed"], class_names=list(CLASS_NAMES),
               recommended_cfg_scale=rec, results=sweep["results"], floor=fl, memorisation=mem,
               rule="the lowest pooled FID among scales with accuracy >= 0.9 and every class >= 0.8")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(out))
    figure(out, args.out.with_suffix(".png"))
    print(args.out.with_suffix(".md").read_text())
    if not args.write:
        return
    if rec is None:
        raise SystemExit("no scale meets accuracy >= 90 % with every class >= 80 %: nothing recommended, "
                         "the manifest is left as it is")
    manifest = WEIGHTS_DIR / f"{args.name}.json"
    info = json.loads(manifest.read_text())
    info["recommended_cfg_scale"] = rec
    info["metrics"] = {
        "cfg_scale": rec, "accuracy": round(chosen["accuracy"], 4),
        "min_class_accuracy": round(chosen["min_class_accuracy"], 4),
        "per_class_accuracy": [round(a, 4) for a in chosen["per_class_accuracy"]],
        "fid": round(chosen["fid"], 3), "fid_class_mean": round(chosen["fid_class_mean"], 3),
        "kid": round(chosen["kid"], 5), "kid_std": round(chosen["kid_std"], 5),
        "floor_fid_mean": round(fl["fid"], 3), "floor_fid_std": round(fl["fid_std"], 3),
        "floor_fid_class_mean": round(fl["fid_class_mean"], 3), "floor_accuracy": round(fl["accuracy"], 4),
        "n": 10 * args.n_per_class, "n_per_class": args.n_per_class, "seed": sweep["seed"],
        "floor_draws": args.floor_draws,
        "sampler": f"samples(model, ScheduleLogLinear(sigma_min=0.01, sigma_max=20, N=800).sample_sigmas("
                   f"{sweep['steps']}), gam={sweep['gam']}, mu={sweep['mu']}, cfg_scale={rec}, cond=labels)",
        "weights_sha256": sha, "command": out["command"], "precision": out["precision"], "machine": out["machine"],
        "details": "bench/guidance.json",
    }
    for seg in info.get("segments", []):
        if seg.get("weights_sha256") == sha:
            seg["fid_end"] = {"fid": info["metrics"]["fid"], "accuracy": info["metrics"]["accuracy"],
                              "cfg_scale": rec, "floor": info["metrics"]["floor_fid_mean"]}
    manifest.write_text(json.dumps(info, indent=2) + "\n")
    replace_readme_block(readme_block(info), README_START, README_END)


README_START, README_END = "<!-- conditional:start -->", "<!-- conditional:end -->"


def readme_block(info: dict) -> str:
    """The README's account of the conditional checkpoint, from its manifest."""
    m, origin = info["metrics"], info.get("initialised_from") or {}
    seg = info["segments"][-1]
    lines = [README_START,
             f"It (`smallunet/weights/{info['file']}`, SHA-256 `{info['sha256'][:16]}…`) started from "
             f"{origin.get('name', 'scratch')} at step {origin.get('step', 0):,} (the label embedding's output layer "
             f"zeroed, so it began as exactly that model) and trained {info['images_seen'] - origin.get('images_seen', 0):,} "
             f"images as a conditional model (label dropout {info['config']['label_dropout']}, "
             f"{sum(s['minutes'] for s in info['segments']):.0f} min on {seg['threads']} thread(s) of this project's "
             f"2-core CPU; `{seg['command']}`).", "",
             f"Measured by `{m['command']}` ({m['n_per_class']} samples per class at each scale, "
             f"20 steps, gam=1.6; full table in `bench/guidance.md`): at the recommended guidance scale "
             f"**s = {info['recommended_cfg_scale']:g}**, the project's classifier assigns **{m['accuracy']:.1%}** of "
             f"the samples to the class asked for (worst class {m['min_class_accuracy']:.1%}; real training images "
             f"{m['floor_accuracy']:.1%}); FID-like score pooled over classes {m['fid']:.1f} (floor at the same n "
             f"{m['floor_fid_mean']:.2f}), per class {m['fid_class_mean']:.1f} (floor {m['floor_fid_class_mean']:.2f}).",
             "", "![accuracy and FID-like score against the guidance scale](bench/guidance.png)", README_END]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
