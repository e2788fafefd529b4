"""The command line for long training runs (``python -m smallunet``, or the
``smallunet-train`` console script).

    python -m smallunet --epochs 300 --checkpoint runs/gpu.safetensors
    torchrun --nproc_per_node 2 -m smallunet --epochs 300 --checkpoint runs/ddp.safetensors
    python -m smallunet --minutes 120 --threads 1 --batch-size 64 --dropout 0 \\
        --sigma-dist mix --loss-weight min_snr --lr-schedule wsd --warmup-steps 200 \\
        --checkpoint runs/cpu.safetensors

Run it again with the same --checkpoint to resume where it stopped (the recipe must
be the same, except budgets and the learning-rate schedule). --export writes the
weights only (EMA and model, fp16) for git or load_pretrained. Every field of
TrainConfig is a flag, checked as TrainConfig checks it. Budgets: --epochs and
--max-steps count the whole run, resumed sessions included; --minutes counts this
invocation only. With no budget given, the recipe's 300 epochs apply.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time

import torch

from .train_config import TrainConfig

_UNSET = object()


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_tuple(text: str) -> tuple:
    try:
        values = tuple(int(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers such as 1,1,2, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return values


def _optional(parse):
    def parser(text: str):
        return None if text.lower() == "none" else parse(text)
    parser.__name__ = parse.__name__
    return parser


def _field_parser(f: dataclasses.Field):
    hint = f.type if isinstance(f.type, str) else str(f.type)
    base = hint.replace(" | None", "").strip()
    parse = {"int": int, "float": float, "bool": _parse_bool, "str": str, "tuple": _parse_tuple}[base]
    return _optional(parse) if "None" in hint else parse


def build_parser() -> argparse.ArgumentParser:
    """One flag per TrainConfig field (``--batch-size`` for ``batch_size``), then the
    run's own flags (checkpoint, export, threads, data)."""
    p = argparse.ArgumentParser(prog="python -m smallunet", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    recipe = p.add_argument_group("the recipe (TrainConfig's fields)")
    for f in dataclasses.fields(TrainConfig):
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        recipe.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=_field_parser(f),
                            default=_UNSET, metavar=f.name.upper(),
                            help=f"{f.metadata.get('help', '')} (default {shown})")
    run = p.add_argument_group("the run")
    run.add_argument("--checkpoint", default=None, help="training checkpoint to resume from and write to")
    run.add_argument("--init-weights", default=None,
                     help="weights file or training checkpoint to start from, with a fresh optimizer; "
                          "an unconditional model's weights start a --num-classes run as exactly that "
                          "model (the label embedding's output zeroed, the EMA's warm-up restarted)")
    run.add_argument("--init-ema", default=None,
                     help="weights file whose EMA weights replace those of --init-weights")
    run.add_argument("--export", default=None, help="write EMA and model weights (fp16) here at the end")
    run.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads), >= 1")
    run.add_argument("--data-root", default=None,
                     help="folder with FashionMNIST (else SMALLUNET_DATA, Debian's folder, download)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_args(argv=None) -> tuple[TrainConfig, argparse.Namespace]:
    """The configuration and the run's flags; a bad value ends with argparse's usage
    message and exit status 2, naming the flag and the value."""
    p = build_parser()
    args = p.parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name) is not _UNSET}
    if not any(given.get(k) is not None for k in ("epochs", "minutes", "max_steps")):
        given.setdefault("epochs", 300)
    elif "epochs" not in given:
        given["epochs"] = None          # a budget in minutes or steps replaces the 300 epochs
    try:
        cfg = TrainConfig(**given)
    except (TypeError, ValueError) as err:
        p.error(f"{err} (check the flag --{_flag_in(str(err))})")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    return cfg, args


def _flag_in(message: str) -> str:
    for f in dataclasses.fields(TrainConfig):
        if message.startswith(f.name) or f"{f.name}=" in message:
            return f.name.replace("_", "-")
    return "..."


def main(argv=None) -> None:
    cfg, args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from .data import load_fashion_mnist
    from .fast_trainer import Trainer
    data, labels = load_fashion_mnist("train", root=args.data_root)
    trainer = Trainer(cfg, data=data, labels=labels if cfg.num_classes else None,
                      checkpoint=args.checkpoint, init_weights=args.init_weights,
                      init_ema=args.init_ema, progress=not args.no_progress,
                      command="python -m smallunet " + shlex.join(sys.argv[1:] if argv is None else argv))
    start_step, t0 = trainer.step, time.time()
    trainer.run()
    seconds = time.time() - t0
    steps = trainer.step - start_step
    if trainer.rank == 0:
        summary = dict(device=str(trainer.device), precision=trainer.precision, processes=trainer.world,
                       threads=torch.get_num_threads(), steps_this_run=steps, total_steps=trainer.step,
                       seconds=round(seconds, 1),
                       images_per_second=round(steps * cfg.batch_size / max(seconds, 1e-9), 1),
                       last_loss=trainer.history[-1][1] if trainer.history else None,
                       lr_now=trainer.learning_rate())
        print(json.dumps(summary))
        if args.export:
            trainer.export_weights(args.export, extra_metadata={"last_run": json.dumps(summary)})
    if trainer.world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
