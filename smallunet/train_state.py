"""What a training run saves, and how it comes back: a checkpoint that resumes exactly
(model, EMA, optimizer, every process's random states, the loss history and the record
of the run's legs), weights to start a new run from, and weights to ship.

``CheckpointState`` holds these as methods of the ``Trainer`` (``save_checkpoint``,
``load_checkpoint``, ``load_weights``, ``export_weights``); files are written and read
only through ``smallunet.checkpoint`` (atomic safetensors writes, hashes).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .checkpoint import (load_checked, optimizer_from_tensors, optimizer_to_tensors, read_weights,
                         save_atomic, split_prefix, write_weights)
from .distributed import gather
from .runrecord import RunRecord
from .train_config import TrainConfig

FORMAT = "smallunet-train-checkpoint-1"

# Fields that may change when a run resumes: budgets, how it runs, and the learning
# rate's schedule (a warm-up-stable-decay run starts its decay on a later resume).
RESUMABLE_CHANGES = ("epochs", "minutes", "max_steps", "precision", "channels_last", "compile", "fast_dropout",
                     "save_every_minutes", "log_every", "lr", "lr_schedule", "warmup_steps",
                     "warmup_start", "lr_total_steps", "decay_start", "decay_steps", "lr_min_ratio")


class CheckpointState:
    """The Trainer's checkpoints. Reads and writes the Trainer's cfg, model, ema,
    optimizer, scaler, generator, step, history, record and grafted_from (and its
    device, rank and world)."""

    def rng_states(self) -> dict[str, torch.Tensor]:
        states = {"cpu": torch.get_rng_state(), "generator": self.generator.get_state().cpu()}
        if self.device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(self.device)
        return states

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Everything needed to resume exactly (written by rank 0, with every rank's RNG)."""
        rng_states = gather(self.rng_states(), self.world)
        if self.rank != 0:
            return
        self.record.snapshot(self.step)
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        optim, groups = optimizer_to_tensors(self.optimizer)
        tensors.update(optim)
        for rank, states in enumerate(rng_states):      # every process's own random states
            tensors.update({f"rng.{rank}.{k}": v for k, v in states.items()})
        save_atomic(tensors, path, metadata={
            "config": self.cfg.to_json(), "step": str(self.step), "param_groups": groups,
            "history": json.dumps(self.history), "format": FORMAT,
            "run_legs": self.record.to_json(),
            **({"grad_scaler": json.dumps(self.scaler.state_dict())} if self.scaler.is_enabled() else {}),
            **({"grafted_from": self.grafted_from} if self.grafted_from else {})})

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Resume from a training checkpoint. Its configuration must agree with this
        one except in the fields of RESUMABLE_CHANGES; every other difference is named."""
        if Path(path).is_dir():
            raise ValueError(f"checkpoint={str(path)!r} is a directory; give a file path such as runs/ckpt.safetensors")
        tensors, meta = load_checked(path)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a smallunet training checkpoint (format={meta.get('format')!r})")
        stored = TrainConfig.from_json(meta["config"])
        diff = stored.differences(self.cfg, ignore=RESUMABLE_CHANGES)
        if diff:
            listed = "; ".join(f"{k}: stored {a!r}, given {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"{path} was trained with another recipe, so it cannot resume with this one "
                             f"({listed}). Use the stored values, another --checkpoint, or "
                             f"--init-weights to start a new run from its weights")
        self.model.load_state_dict(split_prefix(tensors, "model"))
        self.ema.load_state_dict(split_prefix(tensors, "ema"))
        optimizer_from_tensors(self.optimizer, tensors, meta["param_groups"])
        rank = str(self.rank) if f"rng.{self.rank}.cpu" in tensors else None
        if rank is None:
            if self.world > 1:
                raise ValueError(f"{path} holds the random states of fewer processes than the "
                                 f"{self.world} running; resume with as many processes as wrote it")
            rng = {k[4:]: v for k, v in tensors.items() if k.startswith("rng.") and k.count(".") == 1}
        else:
            rng = split_prefix(tensors, f"rng.{rank}")
        torch.set_rng_state(rng["cpu"])
        self.generator.set_state(rng["generator"].to(torch.uint8))
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        if self.scaler.is_enabled() and "grad_scaler" in meta:   # fp16: the loss scale it reached
            self.scaler.load_state_dict(json.loads(meta["grad_scaler"]))
        self.step = int(meta["step"])
        self.history = [tuple(h) for h in json.loads(meta.get("history", "[]"))]
        self.record = RunRecord.from_json(meta.get("run_legs"))
        self.grafted_from = meta.get("grafted_from", self.grafted_from)

    def load_weights(self, path: str | os.PathLike) -> None:
        """Start from exported weights or a training checkpoint, with a fresh optimizer:
        model.* (the raw weights) and, if present, ema.*; the step and history go on."""
        if Path(path).is_dir():
            raise ValueError(f"init_weights={str(path)!r} is a directory; give a .safetensors file")
        ema_sd, model_sd, meta = read_weights(path)
        if not model_sd and not ema_sd:
            raise ValueError(f"{path} holds neither model.* nor ema.* weights")
        model_sd = model_sd or ema_sd
        ema_sd = ema_sd or model_sd
        ema_updates = int(meta.get("ema_updates", "1000"))
        grafted = load_into(self.model, model_sd, path)
        load_into(self.ema.module, ema_sd, path)
        if grafted:
            self.grafted_from = str(path)
        # A graft restarts the EMA's warm-up (decay (1+n)/(10+n)): the label embedding starts
        # at zero, and a 0.999 average would lag the fine-tune by a thousand steps.
        self.ema.n_averaged.fill_(1 if self.grafted_from else ema_updates)
        self.step = int(meta.get("step", "0"))
        self.history = [tuple(h) for h in json.loads(meta.get("history", "[]"))]

    def load_ema_weights(self, path: str | os.PathLike) -> None:
        """Replace the EMA's weights by a file's EMA weights (else its model weights)."""
        ema_sd, model_sd, _ = read_weights(path)
        load_into(self.ema.module, ema_sd or model_sd, path)

    def export_weights(self, path: str | os.PathLike, dtype=torch.float16, include_model: bool = True,
                       extra_metadata: dict[str, str] | None = None) -> None:
        """Weights only (no optimizer), for git and for load_pretrained: ema.* (and model.*)."""
        meta = {"config": self.cfg.to_json(), "step": str(self.step),
                "ema_updates": str(int(self.ema.n_averaged)), "history": json.dumps(self.history),
                "run_legs": self.record.to_json()}
        if self.grafted_from:
            meta["grafted_from"] = self.grafted_from
        meta.update(extra_metadata or {})
        write_weights(path, self.ema.module.state_dict(),
                      self.model.state_dict() if include_model else None, meta, dtype=dtype)


def load_into(model: torch.nn.Module, sd: dict[str, torch.Tensor], path) -> bool:
    """Load ``sd`` into ``model``; returns True when an unconditional model's weights were
    grafted into this conditional one (see ``graft_unconditional``)."""
    sd = {k: v.float() for k, v in sd.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    if missing and all(k.startswith("cond_embed.") for k in missing) and not set(sd) - set(own):
        graft_unconditional(model, sd)
        return True
    try:
        model.load_state_dict(sd)
    except RuntimeError as err:
        raise ValueError(f"the weights in {path} do not fit this recipe's model "
                         f"(check ch, ch_mult, attn_resolutions, num_classes): {err}") from None
    return False


def graft_unconditional(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    """Start a conditional model from an unconditional one's weights ``sd``.

    Every weight but the label embedding's is copied; the label embedding's output layer
    is zeroed, so the conditional model starts as exactly the unconditional one, for every
    label (the null class included), and learns what a label adds from there. Its table of
    embeddings keeps its random start: the zero layer after it still receives gradients.
    """
    cond = getattr(model, "cond_embed", None)
    if cond is None or not hasattr(cond, "mlp"):
        raise ValueError("graft_unconditional needs a model with a CondEmbedderLabel as cond_embed, "
                         f"got cond_embed={cond!r}")
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as err:          # shapes differ: another ch, ch_mult or attn_resolutions
        raise ValueError(f"graft_unconditional: the weights do not fit this model's Unet: {err}") from None
    if unexpected or any(not k.startswith("cond_embed.") for k in missing):
        raise ValueError(f"graft_unconditional: the weights must be those of the same Unet without "
                         f"cond_embed; missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        cond.mlp[-1].weight.zero_()
        cond.mlp[-1].bias.zero_()
