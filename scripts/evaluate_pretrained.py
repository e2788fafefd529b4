"""Measure a checkpoint's sample quality with the project's one protocol and record it.

    python scripts/evaluate_pretrained.py --write                     # the shipped unet_fashion
    python scripts/evaluate_pretrained.py --weights runs/x.safetensors  # any weights, print only

The protocol (``smallunet.protocol``): n = 1000 samples (seed 0) with the book's
sampler, samples(model, ScheduleLogLinear(N=800, sigma_min=0.01, sigma_max=20).sample_sigmas(20), gam=1.6),
scored by the FID-like score and KID against the features of all 10,000 test images;
the floor is n random training images against the same reference, mean and spread
over 5 draws. With --write the metrics go into smallunet/weights/NAME.json with
``weights_sha256``, the hash of the file scored: the script refuses to write metrics
for any file but the one the manifest names. It also records the FID at the end of
the last training segment, writes a 10x10 grid of samples to
bench/pretrained_samples.png, and the curve of FID against images seen to
bench/fid_vs_images.png from the manifest's segments, and the README's section on the
shipped checkpoint (between its pretrained:start/end markers) from the manifest.
"""
import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from smallunet import protocol  # noqa: E402
from smallunet.checkpoint import sha256_of  # noqa: E402
from smallunet.pretrained import PRETRAINED_NAME, WEIGHTS_DIR, load_pretrained, pretrained_info  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default=PRETRAINED_NAME, help="shipped checkpoint (default %(default)s)")
    p.add_argument("--weights", type=Path, default=None, help="a weights file instead of the shipped one")
    p.add_argument("--n", type=int, default=protocol.PROTOCOL["n"])
    p.add_argument("--seed", type=int, default=protocol.PROTOCOL["seed"])
    p.add_argument("--floor-draws", type=int, default=protocol.PROTOCOL["floor_draws"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--bf16", action="store_true", help="sample under bf16 autocast (default fp32)")
    p.add_argument("--write", action="store_true", help="record the metrics in the manifest")
    p.add_argument("--figures-only", action="store_true",
                   help="only redraw the figures from the metrics the manifest records")
    p.add_argument("--bench-dir", type=Path, default=ROOT / "bench", help="where the figures go")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = pretrained_info(args.name)
    shipped = WEIGHTS_DIR / info["file"]
    path = args.weights or shipped
    sha = sha256_of(path)
    if args.write and sha != info["sha256"]:
        p.error(f"--write records metrics for the shipped {info['file']} (SHA-256 {info['sha256']}), "
                f"but {path} has SHA-256 {sha}: export it first (scripts/export_pretrained.py)")
    model = load_pretrained(path, sha256=sha)
    if args.figures_only:
        if info.get("metrics", {}).get("weights_sha256") != sha:
            p.error(f"the manifest records no metrics for {path} (SHA-256 {sha}): run with --write first")
        figures(model, info, info["metrics"], args.bench_dir)
        if args.bench_dir == ROOT / "bench":
            write_readme(info)
        return

    t0 = time.time()
    result = protocol.evaluate(model, n=args.n, seed=args.seed, bf16=args.bf16, progress=True)
    seconds = time.time() - t0
    fl = protocol.floor(n=args.n, draws=args.floor_draws)
    cmd = "python scripts/evaluate_pretrained.py " + " ".join(argv if argv is not None else sys.argv[1:])
    metrics = {
        "fid": round(result["fid"], 3), "kid": round(result["kid"], 5), "kid_std": round(result["kid_std"], 5),
        "floor_fid_mean": round(fl["fid_mean"], 3), "floor_fid_std": round(fl["fid_std"], 3),
        "floor_kid_mean": round(fl["kid_mean"], 5), "floor_kid_std": round(fl["kid_std"], 5),
        "ratio_to_floor": round(result["fid"] / fl["fid_mean"], 2),
        "n": args.n, "seed": args.seed, "floor_draws": args.floor_draws,
        "sampler": f"samples(model, ScheduleLogLinear(sigma_min=0.01, sigma_max=20, N=800)"
                   f".sample_sigmas({result['steps']}), gam={result['gam']}, mu={result['mu']})",
        "reference": "classifier features of all 10,000 FashionMNIST test images",
        "metric": "Frechet distance and KID of the project's FashionMNIST classifier features "
                  "(FID-like, not Inception FID)",
        "weights_sha256": sha, "command": cmd.strip(), "sampling_seconds": round(seconds, 1),
        "precision": "bf16 autocast" if args.bf16 else "fp32",
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
    }
    print(json.dumps(metrics, indent=2))
    if not args.write:
        return
    manifest = WEIGHTS_DIR / f"{args.name}.json"
    info = json.loads(manifest.read_text())
    info["metrics"] = metrics
    for seg in info.get("segments", []):
        if seg.get("weights_sha256") == sha:
            seg["fid_end"] = {"fid": metrics["fid"], "kid": metrics["kid"], "floor": metrics["floor_fid_mean"],
                              "protocol": "protocol.PROTOCOL (n=1000 against all 10,000 test images)"}
    manifest.write_text(json.dumps(info, indent=2) + "\n")
    figures(model, info, metrics, args.bench_dir)
    write_readme(info)


README_START, README_END = "<!-- pretrained:start -->", "<!-- pretrained:end -->"


def readme_block(info: dict) -> str:
    """The README's account of the shipped checkpoint, from its manifest."""
    m = info["metrics"]
    lines = [README_START,
             f"The shipped checkpoint (`smallunet/weights/{info['file']}`, SHA-256 `{info['sha256'][:16]}…`) has seen "
             f"**{info['images_seen']:,} training images ({info['epochs']} epochs)**, step {info['step']}, trained "
             f"on this project's 2-core CPU in {len(info.get('segments', []))} segment(s):", "",
             "| segment | images | batch | minutes | threads | recipe | FID-like at its end |",
             "|---:|---:|---:|---:|---:|---|---:|"]
    for seg in info.get("segments", []):
        r = seg.get("recipe", {})
        recipe = ", ".join(f"{k}={v}" for k, v in r.items() if v is not None)
        end = seg.get("fid_end") or {}
        score = f"{end['fid']:.1f}" + ("" if "10,000" in end.get("protocol", "") else " (older protocol)") if end else ""
        lines.append(f"| {seg['segment']} | {seg['images']:,} | {seg['batch_size']} | {seg['minutes']} | "
                     f"{seg['threads']} | {recipe} | {score} |")
    steps = m["sampler"].split("sample_sigmas(")[1].split(")")[0] if "sample_sigmas(" in m["sampler"] else "?"
    lines += ["", f"Sample quality with the project's protocol (`{m['command']}`): {m['n']} samples from "
                  f"{m['sampler']} ({steps} network evaluations), sampling seed {m['seed']}, "
                  f"{m.get('precision', 'fp32')} sampling, against the classifier features of all 10,000 "
                  f"test images:", "",
              "| measure | value |", "|---|---|",
              f"| FID-like score | **{m['fid']:.1f}** |",
              f"| floor: {m['n']} training images against the same reference ({m['floor_draws']} draws) | "
              f"{m['floor_fid_mean']:.2f} ± {m['floor_fid_std']:.2f} |",
              f"| ratio to the floor (the goal: at most 2) | {m['ratio_to_floor']:.1f} |",
              f"| KID (unbiased; floor {m['floor_kid_mean']:.2f} ± {m['floor_kid_std']:.2f}) | "
              f"{m['kid']:.2f} ± {m['kid_std']:.2f} |",
              "", "KID is the unbiased estimate of the squared MMD with the kernel (x·y/128 + 1)³ on the "
                  "classifier's raw 128-d features, in that kernel's units (not rescaled like Inception KID's "
                  "×1000): compare it only with KIDs on the same features. Being unbiased it is negative when "
                  "two sets are as close as sampling noise makes them, as the floor's are; ± is the spread "
                  "over 10 subsets of the reference.",
              "", "![100 samples of the shipped checkpoint](bench/pretrained_samples.png)", README_END]
    return "\n".join(lines)


def write_readme(info: dict) -> None:
    replace_readme_block(readme_block(info), README_START, README_END)


def replace_readme_block(block: str, start: str, end: str) -> None:
    """Put ``block`` (which begins with ``start`` and ends with ``end``) in place of the
    README's text between those markers (scripts/evaluate_conditional.py uses it too)."""
    path = ROOT / "README.md"
    text = path.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"README.md lacks the markers {start} ... {end}")
    a, b = text.index(start), text.index(end) + len(end)
    path.write_text(text[:a] + block + text[b:])


def figures(model, info, metrics, bench_dir: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from smallunet import ScheduleLogLinear
    x = protocol.generate(model, ScheduleLogLinear(N=800, sigma_min=0.01, sigma_max=20).sample_sigmas(20), 100, 1.6, 0.0,
                            seed=metrics["seed"])
    fig, axes = plt.subplots(10, 10, figsize=(7, 7.4))
    for ax, im in zip(axes.flat, x.clamp(-1, 1)):
        ax.imshow(im[0].numpy(), cmap="gray", vmin=-1, vmax=1)
        ax.axis("off")
    fig.suptitle(f"100 samples of {info['file']} ({info['images_seen']:,} images seen; "
                 f"FID-like {metrics['fid']:.1f}, floor {metrics['floor_fid_mean']:.1f})", fontsize=9)
    fig.tight_layout()
    fig.savefig(bench_dir / "pretrained_samples.png", dpi=100)
    points = [(s["images_seen"], s["fid_end"]["fid"]) for s in info.get("segments", [])
              if s.get("fid_end") and "10,000" in s["fid_end"].get("protocol", "")]
    if points:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=info["file"])
        ax.axhline(metrics["floor_fid_mean"], ls="--", c="k", lw=1, label="floor (real vs real)")
        ax.axhline(2 * metrics["floor_fid_mean"], ls=":", c="k", lw=1, label="2 x floor (the goal)")
        ax.set(xlabel="training images seen", ylabel="FID-like (n=1000)", yscale="log")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(bench_dir / "fid_vs_images.png", dpi=100)


if __name__ == "__main__":
    main()
