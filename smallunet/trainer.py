"""A fast trainer for the FashionMNIST recipe: data on the device, EMA with a warmed-up
decay, mixed precision, atomic safetensors checkpoints that resume exactly, and
DistributedDataParallel under ``torchrun``.

    trainer = Trainer(TrainConfig(epochs=1), checkpoint="runs/ckpt.safetensors")
    trainer.run()                     # a tqdm.auto bar shows the loss
    model = trainer.ema_model()       # the EMA weights, ready for samples()
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from ._checks import check_tensor
from .checkpoint import (load_checked, optimizer_from_tensors, optimizer_to_tensors, read_weights,
                         save_atomic, split_prefix, write_weights)
from .data import random_hflip
from .device import auto_precision, autocast, bf16_supported, default_device, machine_name  # noqa: F401 (bf16_supported: re-exported)
from .dropout import use_fast_dropout
from .runrecord import RunRecord
from .recipe import (TrainConfig, build_model, build_schedule, draw_sigmas, loss_weights,  # noqa: F401
                     lr_factor)
from .training import denoiser_loss
from .unet import Unet

DECIDE_EVERY = 10   # steps between two shared stop/save decisions under DDP

# Fields that may change when a run resumes: budgets, how it runs, and the learning
# rate's schedule (a warm-up-stable-decay run starts its decay on a later resume).
RESUMABLE_CHANGES = ("epochs", "minutes", "max_steps", "precision", "channels_last", "compile", "fast_dropout",
                     "save_every_minutes", "log_every", "lr", "lr_schedule", "warmup_steps",
                     "warmup_start", "lr_total_steps", "decay_start", "decay_steps", "lr_min_ratio")


def ema_multi_avg_fn(decay: float, warmup: bool):
    """In-place EMA update for AveragedModel:
    ema <- ema + (1 - d) (p - ema)."""
    @torch.no_grad()
    def update(ema_params, params, num_averaged):
        d = torch.as_tensor(decay, device=num_averaged.device,
                            dtype=torch.float32)
        if warmup:
            n = num_averaged.to(torch.float32)
            d = torch.minimum(d, (1 + n) / (10 + n))
        w = (1 - d)
        if ema_params and ema_params[0].dtype != torch.float32:
            w = w.to(ema_params[0].dtype)
        for e, p in zip(ema_params, params):
            e.lerp_(p, w)                  # e + w (p - e)
    return update


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


def check_training_data(data, cfg: TrainConfig) -> torch.Tensor:
    """Images must be a float tensor (N, in_ch, in_dim, in_dim) of finite values in [-1, 1]."""
    check_tensor("data", data)
    if not data.is_floating_point():
        raise TypeError(f"data must be a floating-point tensor in [-1, 1], got dtype {data.dtype} "
                        f"(for uint8 images use x.float() / 127.5 - 1)")
    if data.dim() != 4 or tuple(data.shape[1:]) != (cfg.in_ch, cfg.in_dim, cfg.in_dim):
        raise ValueError(f"data must have shape (N, {cfg.in_ch}, {cfg.in_dim}, {cfg.in_dim}), got {tuple(data.shape)}")
    if len(data) < cfg.batch_size:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the data set ({len(data)} images)")
    if not torch.isfinite(data).all():
        raise ValueError(f"data holds {int((~torch.isfinite(data)).sum())} NaN or infinite values")
    lo, hi = float(data.min()), float(data.max())
    if lo < -1 - 1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"data must lie in [-1, 1] (the schedule assumes it), got values from {lo:.4g} to {hi:.4g}")
    return data


def check_labels(labels, data: torch.Tensor, cfg: TrainConfig) -> torch.Tensor | None:
    """Labels: None for an unconditional recipe, else (N,) integers in [0, num_classes)."""
    if not cfg.num_classes:
        if labels is not None:
            raise ValueError("labels given but cfg.num_classes=0 (unconditional); set num_classes")
        return None
    if labels is None:
        raise ValueError(f"cfg.num_classes={cfg.num_classes}: pass labels, an (N,) integer tensor")
    check_tensor("labels", labels)
    if labels.is_floating_point() or labels.dtype == torch.bool or tuple(labels.shape) != (len(data),):
        raise ValueError(f"labels must be an integer tensor of shape ({len(data)},), got dtype "
                         f"{labels.dtype} and shape {tuple(labels.shape)}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= cfg.num_classes:
        raise ValueError(f"labels must be in [0, {cfg.num_classes}), got values from {lo} to {hi}")
    return labels


class Trainer:
    """Trains ``build_model(cfg)`` on ``data`` (N, C, H, W) in [-1, 1] through the
    model's own loss (``denoiser_loss``), with the recipe's learning-rate schedule,
    noise-level distribution and loss weight.

    Global state: the trainer seeds torch's global generator (``cfg.seed``) to
    initialise the model and again per process for dropout, and on CUDA turns on
    TF32 matmuls and cuDNN's benchmark mode; everything else it draws from its own
    ``torch.Generator``.

    Args:
        cfg: the recipe.
        data: the training images; ``None`` loads FashionMNIST's training split.
        labels: (N,) integer class labels, needed when ``cfg.num_classes`` > 0
            (``None`` then loads FashionMNIST's labels with the images).
        device: where to train; default CUDA, then MPS, then CPU (under torchrun,
            the process's own GPU).
        checkpoint: a path; if the file exists the run resumes from it, and it is
            rewritten atomically every ``cfg.save_every_minutes`` and at the end.
        init_weights: a weights file (as ``export_weights`` writes) or a training
            checkpoint to start from, with a fresh optimizer; the global step and the
            loss history continue from it. The weights of the same Unet without a label
            embedding start a conditional recipe through ``graft_unconditional``.
        init_ema: a weights file whose EMA weights (else its model weights) replace
            those of ``init_weights`` (the shipped EMA file beside its raw weights).
        command: the command line that started this run, kept in the checkpoint's
            record of its legs (wall time, threads, precision, machine; see runrecord).
    """

    def __init__(self, cfg: TrainConfig, data: torch.Tensor | None = None, device=None,
                 labels: torch.Tensor | None = None,
                 checkpoint: str | os.PathLike | None = None,
                 init_weights: str | os.PathLike | None = None, progress: bool = True,
                 init_ema: str | os.PathLike | None = None, command: str | None = None):
        if not isinstance(cfg, TrainConfig):
            raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.progress = progress
        # 1. Processes: one per GPU under torchrun, else one; each on its own GPU
        #    (LOCAL_RANK), with the backend its device needs (NCCL for CUDA, else gloo).
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if cfg.batch_size % self.world:
            raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the number of processes {self.world}")
        device = torch.device(default_device() if device is None else device)
        if device.type == "cuda" and device.index is None and self.world > 1:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        self.device = device
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r}: CUDA is not available on this machine "
                             f"(torch {torch.__version__}); use device='cpu' or leave it None")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True

        # 2. Data: the whole set as one tensor on the device.
        if data is None:
            from .data import load_fashion_mnist
            data, loaded_labels = load_fashion_mnist("train")
            if labels is None and cfg.num_classes:      # the labels only for a conditional recipe
                labels = loaded_labels
        check_training_data(data, cfg)
        self.labels = check_labels(labels, data, cfg)
        if len(data) < cfg.batch_size:
            raise ValueError(f"batch_size={cfg.batch_size} is larger than the data set ({len(data)} images)")
        self.channels_last = cfg.channels_last if cfg.channels_last is not None else self.device.type == "cuda"
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.data = data.to(self.device, torch.float32).contiguous(memory_format=fmt)
        if self.labels is not None:
            self.labels = self.labels.to(self.device, torch.long)
        self.steps_per_epoch = len(self.data) // cfg.batch_size
        self.local_batch = cfg.batch_size // self.world

        # 3. Model, EMA, optimizer, schedule.
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg).to(self.device, memory_format=fmt)
        self.fast_dropout = cfg.fast_dropout if cfg.fast_dropout is not None else self.device.type == "cpu"
        if self.fast_dropout:
            use_fast_dropout(self.model)        # the CPU's bernoulli_ is slow and single-threaded
        self.ema = AveragedModel(self.model, multi_avg_fn=ema_multi_avg_fn(cfg.ema_decay, cfg.ema_warmup),
                                 use_buffers=True)
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr,
                                           weight_decay=cfg.weight_decay, fused=fused)
        self.sigmas = build_schedule(cfg).sigmas.to(self.device)
        self.precision = auto_precision(self.device) if cfg.precision == "auto" else cfg.precision
        # fp16's narrow range needs the loss scaled (and the scale adapted) to keep small
        # gradients from flushing to zero; bf16 has fp32's range and needs none
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.record, self.command = RunRecord(), command   # legs of wall time, threads, machine
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed * 1000 + self.rank)
        torch.manual_seed(cfg.seed * 1000 + self.rank)   # dropout's random numbers
        self.step, self.history = 0, []
        self.grafted_from = None   # the unconditional weights a conditional run started from
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        if init_weights is not None:
            self.load_weights(init_weights)
        if init_ema is not None:
            if init_weights is None:
                raise ValueError("init_ema needs init_weights (the raw weights to train)")
            ema_sd, model_sd, _ = read_weights(init_ema)
            self._load_into(self.ema.module, ema_sd or model_sd, init_ema)
        if self.checkpoint is not None and self.checkpoint.exists():
            self.load_checkpoint(self.checkpoint)

        # 4. What the forward pass runs through: DDP, then torch.compile.
        fwd = self.model
        if self.world > 1:
            fwd = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.forward_model = torch.compile(fwd) if cfg.compile else fwd

    # --- the budget -------------------------------------------------------------------
    def total_steps(self) -> int | None:
        """Steps the budget allows, not counting a time limit."""
        limits = []
        if self.cfg.epochs is not None:
            limits.append(math.ceil(self.cfg.epochs * self.steps_per_epoch))
        if self.cfg.max_steps is not None:
            limits.append(self.cfg.max_steps)
        return min(limits) if limits else None

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """This process's share of a permutation that depends only on (seed, epoch),
        so a resumed run sees the same order without storing it."""
        g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        perm = torch.randperm(len(self.data), generator=g)[: self.steps_per_epoch * self.cfg.batch_size]
        return perm[self.rank::self.world].to(self.device)

    # --- one step ---------------------------------------------------------------------
    def batch(self, order: torch.Tensor, pos: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(images (B, C, H, W), labels (B,) or None) at position ``pos`` of an epoch."""
        idx = order[pos * self.local_batch:(pos + 1) * self.local_batch]
        x0 = self.data[idx]                                          # (B, C, H, W)
        if self.cfg.hflip:
            x0 = random_hflip(x0, generator=self.generator)
        return x0, (self.labels[idx] if self.labels is not None else None)

    def learning_rate(self, step: int | None = None) -> float:
        """The recipe's learning rate at a global step (default: the next one)."""
        return self.cfg.lr * lr_factor(self.cfg, self.step if step is None else step, self.total_steps())

    def train_step(self, x0: torch.Tensor,
                   cond: torch.Tensor | None = None) -> torch.Tensor:
        """One AdamW step and EMA update on the batch x0 (and labels);
        returns the loss (on device)."""
        self.model.train()
        B = x0.shape[0]
        sigma = draw_sigmas(self.cfg, self.sigmas, B,
                            generator=self.generator).reshape(B, 1, 1, 1)
        eps = torch.randn(x0.shape, device=self.device,
                          generator=self.generator)
        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(self.device.type, self.precision):
            loss = denoiser_loss(self.model, x0, sigma, eps, cond=cond,
                                 weight=loss_weights(self.cfg, sigma),
                                 net=self.forward_model)
        self.optimizer.zero_grad(set_to_none=True)
        # the plain loss.backward(), but in fp16
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update_parameters(self.model)
        return loss.detach()

    # --- the loop ---------------------------------------------------------------------
    def steps(self) -> Iterator[SimpleNamespace]:
        """Train until the budget is spent, yielding after every step
        (step, epoch, loss as a device tensor)."""
        total, start, last_save = self.total_steps(), time.time(), time.time()
        deadline = start + 60 * self.cfg.minutes if self.cfg.minutes is not None else math.inf
        epoch, order, done = None, None, 0
        self.record.begin(self.step, threads=torch.get_num_threads(), processes=self.world,
                          precision=self.precision, machine=machine_name(self.device), command=self.command)
        while total is None or self.step < total:
            # Time-based decisions (stop, save) by rank 0's clock, shared by every rank, so
            # that no rank waits in a collective another rank has left; under DDP every
            # DECIDE_EVERY steps (one tiny broadcast), alone at every step.
            if self.world == 1 or done % DECIDE_EVERY == 0:
                stop, save = self._decide(time.time() >= deadline,
                                          time.time() - last_save > 60 * self.cfg.save_every_minutes)
                if stop:
                    break
                if save and self.checkpoint is not None and done:
                    self.save_checkpoint(self.checkpoint)
                    last_save = time.time()
            e, pos = divmod(self.step, self.steps_per_epoch)
            if e != epoch:
                epoch, order = e, self.epoch_order(e)
            loss = self.train_step(*self.batch(order, pos))
            self.step += 1
            done += 1
            yield SimpleNamespace(step=self.step, epoch=self.step / self.steps_per_epoch, loss=loss)
        self.record.end(self.step)
        if self.checkpoint is not None:
            self.save_checkpoint(self.checkpoint)

    def _decide(self, stop: bool, save: bool) -> tuple[bool, bool]:
        """(stop, save) as rank 0 decided them, on every rank."""
        if self.world == 1:
            return stop, save
        flags = torch.tensor([stop, save], dtype=torch.uint8,
                             device=self.device if dist.get_backend() == "nccl" else "cpu")
        dist.broadcast(flags, src=0)
        return bool(flags[0]), bool(flags[1])

    def run(self) -> list[tuple[int, float]]:
        """Train with a progress bar; returns the loss history [(step, mean loss)], a point at
        every multiple of ``log_every`` (the mean over the steps since the last point)."""
        total = self.total_steps()
        bar = tqdm(total=total, initial=min(self.step, total or self.step), disable=not self.progress or self.rank != 0,
                   desc=f"training on {self.device.type} ({self.precision})", unit="step")
        acc, n = None, 0
        for s in self.steps():
            acc = s.loss if acc is None else acc + s.loss
            n += 1
            if s.step % self.cfg.log_every == 0:     # at the same steps whether or not the run resumed
                self.history.append((s.step, float(acc) / n))      # one sync per log_every steps
                bar.set_postfix(loss=f"{self.history[-1][1]:.4f}", epoch=f"{s.epoch:.2f}")
                acc, n = None, 0
            bar.update(1)
        bar.close()
        return self.history

    # --- checkpoints --------------------------------------------------------------------
    def ema_model(self) -> Unet:
        """The EMA network (a Scaled(Unet)), in eval mode, on the training device."""
        return self.ema.module.eval()

    def rng_states(self) -> dict[str, torch.Tensor]:
        states = {"cpu": torch.get_rng_state(), "generator": self.generator.get_state().cpu()}
        if self.device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(self.device)
        return states

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Everything needed to resume exactly (written by rank 0, with every rank's RNG)."""
        rng_states = [self.rng_states()]
        if self.world > 1:
            gathered = [None] * self.world
            dist.all_gather_object(gathered, rng_states[0])
            rng_states = gathered
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
            "history": json.dumps(self.history), "format": "smallunet-train-checkpoint-1",
            "run_legs": self.record.to_json(),
            **({"grad_scaler": json.dumps(self.scaler.state_dict())} if self.scaler.is_enabled() else {}),
            **({"grafted_from": self.grafted_from} if self.grafted_from else {})})

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Resume from a training checkpoint. Its configuration must agree with this
        one except in the fields of RESUMABLE_CHANGES; every other difference is named."""
        if Path(path).is_dir():
            raise ValueError(f"checkpoint={str(path)!r} is a directory; give a file path such as runs/ckpt.safetensors")
        tensors, meta = load_checked(path)
        if meta.get("format") != "smallunet-train-checkpoint-1":
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
        grafted = self._load_into(self.model, model_sd, path)
        self._load_into(self.ema.module, ema_sd, path)
        if grafted:
            self.grafted_from = str(path)
        # A graft restarts the EMA's warm-up (decay (1+n)/(10+n)): the label embedding starts
        # at zero, and a 0.999 average would lag the fine-tune by a thousand steps.
        self.ema.n_averaged.fill_(1 if self.grafted_from else ema_updates)
        self.step = int(meta.get("step", "0"))
        self.history = [tuple(h) for h in json.loads(meta.get("history", "[]"))]

    def _load_into(self, model: torch.nn.Module, sd: dict[str, torch.Tensor], path) -> bool:
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
