"""Train the FashionMNIST classifier whose features the FID-like metric uses.

    python scripts/train_classifier.py              # 2 free CPU cores: about 8 minutes
    python scripts/train_classifier.py --threads 1  # when another job holds a core

The shipped weights came from the second command: 14.4 minutes of CPU time, 50 minutes
of wall time on a 2-core machine busy with other jobs (10 epochs of 469 steps).

Writes smallunet/weights/fashion_classifier.safetensors (fp16) and, beside it,
fashion_classifier.json with the test accuracy, the SHA-256, the command and the
time taken. After a retrain, copy the printed SHA-256 into CLASSIFIER_SHA256 in
smallunet/classifier.py (or load your file with ``load_classifier(path, sha256=None)``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from smallunet.checkpoint import sha256_of  # noqa: E402
from smallunet.classifier import FashionClassifier, load_classifier  # noqa: E402
from smallunet.data import load_fashion_mnist, random_hflip  # noqa: E402


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Move each image of (B, 1, H, W) by up to ``max_shift`` pixels in x and y,
    filling with the background value -1."""
    B, _, H, W = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)  # (B, 1, H + 2s, W + 2s)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, B, 1), generator=generator)  # (B, 1) each
    rows = (torch.arange(H) + dy)[:, :, None]  # (B, H, 1)
    cols = (torch.arange(W) + dx)[:, None, :]  # (B, 1, W)
    return padded[torch.arange(B)[:, None, None], 0, rows, cols].unsqueeze(1)  # (B, 1, H, W)


def _show(value):
    """A path relative to the repository where it can be, for the json record."""
    if isinstance(value, Path):
        return str(value.relative_to(ROOT)) if value.is_relative_to(ROOT) else str(value)
    return value


@torch.no_grad()
def accuracy(model, x, y, batch_size: int = 1000) -> float:
    model.eval()
    correct = sum((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
                  for i in range(0, len(x), batch_size))
    return correct / len(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3, help="peak of the one-cycle schedule")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--max-shift", type=int, default=2, help="pixels; 0 turns shifts off")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads; use 1 when another job shares a 2-core machine (default: all)")
    p.add_argument("--limit", type=int, default=None,
                   help="train on the first LIMIT training images and test on the first LIMIT test images "
                        "(a quick check of the script; default all)")
    p.add_argument("--out", type=Path, default=ROOT / "smallunet" / "weights" / "fashion_classifier.safetensors")
    args = p.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # more threads than free cores makes every step slower
    start = time.time()
    torch.manual_seed(args.seed)  # the initial weights and dropout
    gen = torch.Generator().manual_seed(args.seed)  # shuffling and augmentation

    x_train, y_train = load_fashion_mnist("train")
    x_test, y_test = load_fashion_mnist("test")
    if args.limit is not None:
        if args.limit < args.batch_size:
            p.error(f"--limit must be at least the batch size ({args.batch_size}), got {args.limit}")
        x_train, y_train, x_test, y_test = x_train[:args.limit], y_train[:args.limit], x_test[:args.limit], y_test[:args.limit]
    model = FashionClassifier().to(memory_format=torch.channels_last)  # faster convs on CPU
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = args.epochs * (len(x_train) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)

    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        total, n = 0.0, 0
        for i in range(0, len(x_train) - args.batch_size + 1, args.batch_size):  # drop the last partial batch
            idx = perm[i:i + args.batch_size]
            x = random_hflip(x_train[idx], generator=gen)
            if args.max_shift > 0:
                x = random_shift(x, args.max_shift, gen)
            loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)),
                                   y_train[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + loss.item(), n + 1
        print(f"epoch {epoch + 1}/{args.epochs}  train loss {total / n:.4f}  "
              f"{time.time() - start:.0f} s", flush=True)

    # Save in fp16 (half the size) and measure the accuracy of exactly what is saved.
    from safetensors.torch import save_file
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(args.out), metadata={"ch": str(model.ch), "feat_dim": str(model.feat_dim)})
    digest = sha256_of(args.out)
    acc = accuracy(load_classifier(args.out, sha256=digest), x_test, y_test)
    wall = time.time() - start
    record = {
        "test_accuracy": round(acc, 4),
        "test_images": len(x_test),
        "sha256": digest,
        "size_bytes": args.out.stat().st_size,
        "command": "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0]))] + sys.argv[1:]),
        "args": {k: _show(v) for k, v in vars(args).items()},
        "wall_time_s": round(wall, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"test accuracy {acc:.4f}  sha256 {digest}  wall time {wall:.0f} s")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
