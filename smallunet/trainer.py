"""A fast trainer for the FashionMNIST recipe: data on the device, EMA with a warmed-up
decay, mixed precision, atomic safetensors checkpoints that resume exactly, and
DistributedDataParallel under ``torchrun``.

    trainer = Trainer(TrainConfig(epochs=1), checkpoint="runs/ckpt.safetensors")
    trainer.run()                     # a tqdm.auto bar shows the loss
    model = trainer.ema_model()       # the EMA weights, ready for samples()
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from ._checks import check_float, check_int, check_tensor
from .checkpoint import (load_checked, optimizer_from_tensors, optimizer_to_tensors,
                         save_atomic, split_prefix)
from .device import default_device
from .schedules import ScheduleLogLinear
from .unet import Unet
from .wrappers import Scaled


@dataclass
class TrainConfig:
    """The recipe. Defaults are the seed's: Scaled(Unet)(28, 1, 1, ch=64,
    ch_mult=(1, 1, 2), attn_resolutions=(14,)), ScheduleLogLinear(0.01, 20, 800),
    AdamW lr 7e-4, batch 1024, EMA 0.999, random horizontal flips, 300 epochs."""
    in_dim: int = 28
    in_ch: int = 1
    ch: int = 64
    ch_mult: tuple = (1, 1, 2)
    attn_resolutions: tuple = (14,)
    dropout: float = 0.1
    sigma_min: float = 0.01
    sigma_max: float = 20.0
    N: int = 800
    lr: float = 7e-4
    batch_size: int = 1024            # global batch, split across processes under DDP
    ema_decay: float = 0.999
    ema_warmup: bool = True           # decay min(ema_decay, (1 + n) / (10 + n)) after n updates
    hflip: bool = True
    epochs: float | None = 300        # budget: whichever of epochs, minutes, max_steps ends first
    minutes: float | None = None
    max_steps: int | None = None
    precision: str = "auto"           # "auto", "bf16" or "fp32"
    channels_last: bool | None = None  # None: on CUDA only
    compile: bool = False
    seed: int = 0
    save_every_minutes: float = 10.0
    log_every: int = 25               # steps per point of the loss history

    def __post_init__(self):
        self.ch_mult, self.attn_resolutions = tuple(self.ch_mult), tuple(self.attn_resolutions)
        check_int("batch_size", self.batch_size, minimum=1)
        check_float("lr", self.lr, low=0.0, low_open=True)
        check_float("ema_decay", self.ema_decay, low=0.0, high=1.0, high_open=True)
        if self.epochs is None and self.minutes is None and self.max_steps is None:
            raise ValueError("give a budget: epochs, minutes or max_steps (all are None)")
        if self.epochs is not None:
            check_float("epochs", self.epochs, low=0.0, low_open=True)
        if self.minutes is not None:
            check_float("minutes", self.minutes, low=0.0, low_open=True)
        if self.max_steps is not None:
            check_int("max_steps", self.max_steps, minimum=1)
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        check_int("log_every", self.log_every, minimum=1)

    def model_kwargs(self) -> dict:
        return dict(in_dim=self.in_dim, in_ch=self.in_ch, out_ch=self.in_ch, ch=self.ch,
                    ch_mult=self.ch_mult, attn_resolutions=self.attn_resolutions, dropout=self.dropout)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str, **overrides) -> "TrainConfig":
        d = json.loads(text)
        d = {k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}}
        d.update(overrides)
        return cls(**d)


def build_model(cfg: TrainConfig) -> Unet:
    """Scaled(Unet) with the configuration's architecture."""
    return Scaled(Unet)(**cfg.model_kwargs())


def build_schedule(cfg: TrainConfig) -> ScheduleLogLinear:
    return ScheduleLogLinear(N=cfg.N, sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max)


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is fast here: CUDA with bf16, or a CPU with native bf16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(probe()) if probe is not None else False
    return False


def ema_multi_avg_fn(decay: float, warmup: bool):
    """In-place EMA update for AveragedModel: ema <- ema + (1 - d) (p - ema)."""
    @torch.no_grad()
    def update(ema_params, params, num_averaged):
        d = torch.as_tensor(decay, device=num_averaged.device, dtype=torch.float32)
        if warmup:
            n = num_averaged.to(torch.float32)
            d = torch.minimum(d, (1 + n) / (10 + n))
        w = (1 - d)
        if ema_params and ema_params[0].dtype != torch.float32:
            w = w.to(ema_params[0].dtype)
        torch._foreach_lerp_(ema_params, params, w)
    return update


class Trainer:
    """Trains ``build_model(cfg)`` on ``data`` (N, C, H, W) in [-1, 1].

    Args:
        cfg: the recipe.
        data: the training images; ``None`` loads FashionMNIST's training split.
        device: where to train; default CUDA, then MPS, then CPU (under torchrun,
            the process's own GPU).
        checkpoint: a path; if the file exists the run resumes from it, and it is
            rewritten atomically every ``cfg.save_every_minutes`` and at the end.
        init_weights: a weights file (``model.*`` and optionally ``ema.*`` tensors,
            as ``export_weights`` writes) to start from, with a fresh optimizer.
    """

    def __init__(self, cfg: TrainConfig, data: torch.Tensor | None = None, device=None,
                 checkpoint: str | os.PathLike | None = None,
                 init_weights: str | os.PathLike | None = None, progress: bool = True):
        if not isinstance(cfg, TrainConfig):
            raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.progress = progress
        # 1. Processes: one per GPU under torchrun, else one.
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        if cfg.batch_size % self.world:
            raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the number of processes {self.world}")
        if device is None:
            device = default_device()
            if device.type == "cuda" and self.world > 1:
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True

        # 2. Data: the whole set as one tensor on the device.
        if data is None:
            from .data import load_fashion_mnist
            data, _ = load_fashion_mnist("train")
        check_tensor("data", data)
        if data.dim() != 4 or tuple(data.shape[1:]) != (cfg.in_ch, cfg.in_dim, cfg.in_dim):
            raise ValueError(f"data must have shape (N, {cfg.in_ch}, {cfg.in_dim}, {cfg.in_dim}), got {tuple(data.shape)}")
        if len(data) < cfg.batch_size:
            raise ValueError(f"batch_size={cfg.batch_size} is larger than the data set ({len(data)} images)")
        self.channels_last = cfg.channels_last if cfg.channels_last is not None else self.device.type == "cuda"
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.data = data.to(self.device, torch.float32).contiguous(memory_format=fmt)
        self.steps_per_epoch = len(self.data) // cfg.batch_size
        self.local_batch = cfg.batch_size // self.world

        # 3. Model, EMA, optimizer, schedule.
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg).to(self.device, memory_format=fmt)
        self.ema = AveragedModel(self.model, multi_avg_fn=ema_multi_avg_fn(cfg.ema_decay, cfg.ema_warmup),
                                 use_buffers=True)
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, fused=fused)
        self.sigmas = build_schedule(cfg).sigmas.to(self.device)
        self.precision = ("bf16" if bf16_supported(self.device) else "fp32") if cfg.precision == "auto" else cfg.precision
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed * 1000 + self.rank)
        torch.manual_seed(cfg.seed * 1000 + self.rank)   # dropout's random numbers
        self.step, self.history = 0, []
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        if init_weights is not None:
            self.load_weights(init_weights)
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
    def batch(self, order: torch.Tensor, pos: int) -> torch.Tensor:
        x0 = self.data[order[pos * self.local_batch:(pos + 1) * self.local_batch]]   # (B, C, H, W)
        if self.cfg.hflip:
            flip = torch.rand(x0.shape[0], device=self.device, generator=self.generator) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        return x0

    def train_step(self, x0: torch.Tensor) -> torch.Tensor:
        """One AdamW step and EMA update on the batch x0; returns the loss (on device)."""
        self.model.train()
        B = x0.shape[0]
        idx = torch.randint(len(self.sigmas), (B,), device=self.device, generator=self.generator)
        sigma = self.sigmas[idx].reshape(B, 1, 1, 1)
        eps = torch.randn(x0.shape, device=self.device, generator=self.generator)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            pred = self.forward_model(x0 + sigma * eps, sigma)
        loss = F.mse_loss(pred.float(), eps)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.ema.update_parameters(self.model)
        return loss.detach()

    # --- the loop ---------------------------------------------------------------------
    def steps(self) -> Iterator[SimpleNamespace]:
        """Train until the budget is spent, yielding after every step
        (step, epoch, loss as a device tensor)."""
        total, start, last_save = self.total_steps(), time.time(), time.time()
        deadline = start + 60 * self.cfg.minutes if self.cfg.minutes is not None else math.inf
        epoch, order = None, None
        while (total is None or self.step < total) and time.time() < deadline:
            e, pos = divmod(self.step, self.steps_per_epoch)
            if e != epoch:
                epoch, order = e, self.epoch_order(e)
            loss = self.train_step(self.batch(order, pos))
            self.step += 1
            yield SimpleNamespace(step=self.step, epoch=self.step / self.steps_per_epoch, loss=loss)
            if self.checkpoint is not None and time.time() - last_save > 60 * self.cfg.save_every_minutes:
                self.save_checkpoint(self.checkpoint)
                last_save = time.time()
        if self.checkpoint is not None:
            self.save_checkpoint(self.checkpoint)

    def run(self) -> list[tuple[int, float]]:
        """Train with a progress bar; returns the loss history [(step, mean loss)]."""
        total = self.total_steps()
        bar = tqdm(total=total, initial=min(self.step, total or self.step), disable=not self.progress or self.rank != 0,
                   desc=f"training on {self.device.type} ({self.precision})", unit="step")
        acc, n = None, 0
        for s in self.steps():
            acc = s.loss if acc is None else acc + s.loss
            n += 1
            if n == self.cfg.log_every:
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

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        if self.rank != 0:
            return
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        optim, groups = optimizer_to_tensors(self.optimizer)
        tensors.update(optim)
        tensors["rng.cpu"] = torch.get_rng_state()
        tensors["rng.generator"] = self.generator.get_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        save_atomic(tensors, path, metadata={
            "config": self.cfg.to_json(), "step": str(self.step), "param_groups": groups,
            "history": json.dumps(self.history), "format": "smallunet-train-checkpoint-1"})

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        tensors, meta = load_checked(path)
        if meta.get("format") != "smallunet-train-checkpoint-1":
            raise ValueError(f"{path} is not a smallunet training checkpoint (format={meta.get('format')!r})")
        self.model.load_state_dict(split_prefix(tensors, "model"))
        self.ema.load_state_dict(split_prefix(tensors, "ema"))
        optimizer_from_tensors(self.optimizer, tensors, meta["param_groups"])
        for group in self.optimizer.param_groups:   # the configuration's lr wins on resume
            group["lr"] = self.cfg.lr
        torch.set_rng_state(tensors["rng.cpu"])
        self.generator.set_state(tensors["rng.generator"].to(torch.uint8))
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.step = int(meta["step"])
        self.history = [tuple(h) for h in json.loads(meta.get("history", "[]"))]

    def load_weights(self, path: str | os.PathLike) -> None:
        """Start from exported weights (fresh optimizer): model.* and, if present, ema.*"""
        tensors, meta = load_checked(path)
        model_sd = split_prefix(tensors, "model") or tensors
        self.model.load_state_dict({k: v.float() for k, v in model_sd.items()})
        ema_sd = split_prefix(tensors, "ema") or model_sd
        self.ema.module.load_state_dict({k: v.float() for k, v in ema_sd.items()})
        self.ema.n_averaged.fill_(int(meta.get("ema_updates", "1000")))
        self.step = int(meta.get("step", "0"))
        self.history = [tuple(h) for h in json.loads(meta.get("history", "[]"))]

    def export_weights(self, path: str | os.PathLike, dtype=torch.float16, include_model: bool = True,
                       extra_metadata: dict[str, str] | None = None) -> None:
        """Weights only (no optimizer), for git and for load_pretrained: ema.* (and model.*)."""
        tensors = {f"ema.{k}": v.to(dtype) for k, v in self.ema.module.state_dict().items()}
        if include_model:
            tensors.update({f"model.{k}": v.to(dtype) for k, v in self.model.state_dict().items()})
        meta = {"config": self.cfg.to_json(), "step": str(self.step),
                "ema_updates": str(int(self.ema.n_averaged)), "history": json.dumps(self.history),
                "format": "smallunet-weights-1"}
        meta.update(extra_metadata or {})
        save_atomic(tensors, path, metadata=meta)
