"""Measure the shipped checkpoint's sample quality and record it in its manifest.

    python scripts/evaluate_pretrained.py --n 1000 --write

Draws n samples with the book's call, samples(model, ScheduleLogLinear(sigma_min=0.01,
sigma_max=20, N=800).sample_sigmas(20), gam=1.6), and computes the FID-like score
(Frechet distance in the feature space of the project's FashionMNIST classifier)
against n random test images, and the real-versus-real floor: n random training
images against the same n test images. With --write both go into
smallunet/weights/unet_fashion.json under "metrics", and a grid of 64 samples into
bench/pretrained_samples.png.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from smallunet import ScheduleLogLinear, load_fashion_mnist, load_pretrained, samples  # noqa: E402
from smallunet.evaluation import feature_statistics, frechet_distance  # noqa: E402
from smallunet.pretrained import PRETRAINED_NAME, WEIGHTS_DIR  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--weights", default=None, help="a weights file (default: the shipped one)")
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    model = load_pretrained(args.weights) if args.weights is None else load_pretrained(args.weights, sha256=None)
    sigmas = ScheduleLogLinear(sigma_min=0.01, sigma_max=20, N=800).sample_sigmas(20)
    gen = torch.Generator().manual_seed(args.seed)
    t0, out = time.time(), []
    for start in range(0, args.n, args.batch):
        b = min(args.batch, args.n - start)
        *_, x0 = samples(model, sigmas, gam=1.6, batchsize=b, generator=gen)
        out.append(x0.clamp(-1, 1))
    fake = torch.cat(out)
    seconds = time.time() - t0
    x_train, _ = load_fashion_mnist("train")
    x_test, _ = load_fashion_mnist("test")
    g = torch.Generator().manual_seed(args.seed)
    train = x_train[torch.randperm(len(x_train), generator=g)[:args.n]]
    test = x_test[torch.randperm(len(x_test), generator=g)[:args.n]]
    ref = feature_statistics(test)
    score = frechet_distance(*feature_statistics(fake), *ref)
    floor = frechet_distance(*feature_statistics(train), *ref)
    metrics = {"fid": round(score, 3), "floor": round(floor, 3), "n": args.n, "seed": args.seed,
               "sampler": "samples(model, ScheduleLogLinear(sigma_min=0.01, sigma_max=20, N=800).sample_sigmas(20), gam=1.6)",
               "metric": "Frechet distance of the project's FashionMNIST classifier features (FID-like, not Inception FID)",
               "command": f"python scripts/evaluate_pretrained.py --n {args.n} --seed {args.seed} --write",
               "sampling_seconds": round(seconds, 1)}
    print(json.dumps(metrics))
    if args.write:
        manifest = WEIGHTS_DIR / f"{PRETRAINED_NAME}.json"
        info = json.loads(manifest.read_text())
        info["metrics"] = metrics
        manifest.write_text(json.dumps(info, indent=2) + "\n")
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(4, 16, figsize=(16, 4.4))
        for ax, im in zip(axes.flat, fake[:64]):
            ax.imshow(im[0].numpy(), cmap="gray", vmin=-1, vmax=1)
            ax.axis("off")
        fig.suptitle(f"64 samples of the shipped checkpoint (step {info['step']}, FID-like {score:.1f}, floor {floor:.1f} at n={args.n})")
        fig.tight_layout()
        fig.savefig(ROOT / "bench" / "pretrained_samples.png", dpi=80)


if __name__ == "__main__":
    main()
