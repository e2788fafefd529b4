"""Command line for long training runs.

    python -m smallunet.train --epochs 300 --checkpoint runs/gpu.safetensors
    torchrun --nproc_per_node 2 -m smallunet.train --epochs 300 --checkpoint runs/ddp.safetensors

Run it again with the same --checkpoint to resume where it stopped. --export
writes the weights only (EMA and model, fp16) for git or load_pretrained.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from .trainer import Trainer, TrainConfig


def parse_args(argv=None) -> argparse.Namespace:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m smallunet.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=float, default=None, help="budget in epochs (default 300 if no other budget)")
    p.add_argument("--minutes", type=float, default=None, help="budget in wall-clock minutes")
    p.add_argument("--max-steps", type=int, default=None, help="budget in optimizer steps (in total, resumed runs included)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch size")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--ema-decay", type=float, default=d.ema_decay)
    p.add_argument("--ch", type=int, default=d.ch)
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default=d.precision)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--checkpoint", default=None, help="training checkpoint to resume from and write to")
    p.add_argument("--init-weights", default=None, help="weights file to start from, fresh optimizer")
    p.add_argument("--export", default=None, help="write EMA and model weights (fp16) here at the end")
    p.add_argument("--save-every", type=float, default=d.save_every_minutes, help="minutes between checkpoints")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--data-root", default=None, help="folder with FashionMNIST (else SMALLUNET_DATA, Debian's folder, download)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    epochs = args.epochs if (args.epochs or args.minutes or args.max_steps) else 300
    cfg = TrainConfig(epochs=epochs, minutes=args.minutes, max_steps=args.max_steps,
                      batch_size=args.batch_size, lr=args.lr, ema_decay=args.ema_decay, ch=args.ch,
                      precision=args.precision, compile=args.compile, seed=args.seed,
                      save_every_minutes=args.save_every)
    from .data import load_fashion_mnist
    data, _ = load_fashion_mnist("train", root=args.data_root)
    trainer = Trainer(cfg, data=data, checkpoint=args.checkpoint, init_weights=args.init_weights,
                      progress=not args.no_progress)
    start_step, t0 = trainer.step, time.time()
    trainer.run()
    seconds = time.time() - t0
    steps = trainer.step - start_step
    if trainer.rank == 0:
        summary = dict(device=str(trainer.device), precision=trainer.precision, processes=trainer.world,
                       steps_this_run=steps, total_steps=trainer.step, seconds=round(seconds, 1),
                       images_per_second=round(steps * cfg.batch_size / max(seconds, 1e-9), 1),
                       last_loss=trainer.history[-1][1] if trainer.history else None)
        print(json.dumps(summary))
        if args.export:
            trainer.export_weights(args.export, extra_metadata={"last_run": json.dumps(summary)})
    if trainer.world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
