"""The fast trainer for the FashionMNIST recipe: the whole data set on the device, an EMA
with a warmed-up decay, mixed precision, atomic safetensors checkpoints that resume
exactly, and DistributedDataParallel under ``torchrun``.

    trainer = Trainer(TrainConfig(epochs=1), checkpoint="runs/ckpt.safetensors")
    trainer.run()                     # a tqdm.auto bar shows the loss
    model = trainer.ema_model()       # the EMA weights, ready for samples()

The configuration flows one way: ``__init__`` builds every piece from it once (the
model, the EMA, the optimizer, the recipe's curves) and the loop uses only those.
Its parts live beside it: ``ema``, ``distributed``, ``train_state`` (checkpoints),
``train_recipe`` (the curves) and ``train_data`` (the checks of the data).
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import torch
from tqdm.auto import tqdm

from .data import random_hflip
from .device import auto_precision, autocast, machine_name
from .distributed import DECIDE_EVERY, decide, setup_process, wrap_for_processes, world_and_rank
from .ema import make_ema
from .cpu_speedups import use_fast_dropout
from .plain_training import denoiser_loss
from .runrecord import RunRecord
from .train_config import TrainConfig, build_model, build_schedule
from .train_data import check_labels, check_training_data
from .train_recipe import LearningRate, LossWeight, NoiseLevelDraw
from .train_state import CheckpointState
from .unet import Unet


class Trainer(CheckpointState):
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
        # 1. Processes: one per GPU under torchrun, else one (see distributed.py).
        self.world, self.rank = world_and_rank()
        if cfg.batch_size % self.world:
            raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the number of processes {self.world}")
        self.device = setup_process(device, self.world)

        # 2. Data: the whole set as one tensor on the device.
        if data is None:
            from .data import load_fashion_mnist
            data, loaded_labels = load_fashion_mnist("train")
            if labels is None and cfg.num_classes:      # the labels only for a conditional recipe
                labels = loaded_labels
        check_training_data(data, cfg)
        self.labels = check_labels(labels, data, cfg)
        self.channels_last = cfg.channels_last if cfg.channels_last is not None else self.device.type == "cuda"
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.data = data.to(self.device, torch.float32).contiguous(memory_format=fmt)
        if self.labels is not None:
            self.labels = self.labels.to(self.device, torch.long)
        self.steps_per_epoch = len(self.data) // cfg.batch_size
        self.local_batch = cfg.batch_size // self.world

        # 3. Model, EMA, optimizer, and the recipe's curves, each built once from cfg.
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg).to(self.device, memory_format=fmt)
        self.fast_dropout = cfg.fast_dropout if cfg.fast_dropout is not None else self.device.type == "cpu"
        if self.fast_dropout:
            use_fast_dropout(self.model)        # the CPU's bernoulli_ is slow and single-threaded
        self.ema = make_ema(self.model, cfg.ema_decay, cfg.ema_warmup)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           fused=self.device.type == "cuda")
        self.sigmas = build_schedule(cfg).sigmas.to(self.device)
        self.lr_curve = LearningRate.from_config(cfg, self.total_steps())     # lr at a step
        self.sigma_draw = NoiseLevelDraw.from_config(cfg, self.sigmas)        # a batch's sigmas
        self.loss_weight = LossWeight.from_config(cfg)                        # weight per sigma
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
            self.load_ema_weights(init_ema)
        if self.checkpoint is not None and self.checkpoint.exists():
            self.load_checkpoint(self.checkpoint)

        # 4. What the forward pass runs through: DDP, then torch.compile.
        fwd = wrap_for_processes(self.model, self.device, self.world)
        self.forward_model = torch.compile(fwd) if cfg.compile else fwd

    # --- one step ---------------------------------------------------------------------
    def train_step(self, x0: torch.Tensor,
                   cond: torch.Tensor | None = None) -> torch.Tensor:
        """One AdamW step and EMA update on the batch x0 (and labels);
        returns the loss (on device)."""
        self.model.train()
        B = x0.shape[0]
        sigma = self.sigma_draw(B, self.generator).reshape(B, 1, 1, 1)
        eps = torch.randn(x0.shape, device=self.device,
                          generator=self.generator)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_curve(self.step)
        with autocast(self.device.type, self.precision):
            loss = denoiser_loss(self.model, x0, sigma, eps, cond=cond,
                                 weight=self.loss_weight(sigma),
                                 net=self.forward_model)
        self.optimizer.zero_grad(set_to_none=True)
        # the plain loss.backward(), but in fp16
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update_parameters(self.model)
        return loss.detach()

    def batch(self, order: torch.Tensor, pos: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(images (B, C, H, W), labels (B,) or None) at position ``pos`` of an epoch."""
        idx = order[pos * self.local_batch:(pos + 1) * self.local_batch]
        x0 = self.data[idx]                                          # (B, C, H, W)
        if self.cfg.hflip:
            x0 = random_hflip(x0, generator=self.generator)
        return x0, (self.labels[idx] if self.labels is not None else None)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """This process's share of a permutation that depends only on (seed, epoch),
        so a resumed run sees the same order without storing it."""
        g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        perm = torch.randperm(len(self.data), generator=g)[: self.steps_per_epoch * self.cfg.batch_size]
        return perm[self.rank::self.world].to(self.device)

    def learning_rate(self, step: int | None = None) -> float:
        """The recipe's learning rate at a global step (default: the next one)."""
        return self.lr_curve(self.step if step is None else step)

    def total_steps(self) -> int | None:
        """Steps the budget allows, not counting a time limit."""
        limits = []
        if self.cfg.epochs is not None:
            limits.append(math.ceil(self.cfg.epochs * self.steps_per_epoch))
        if self.cfg.max_steps is not None:
            limits.append(self.cfg.max_steps)
        return min(limits) if limits else None

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
                stop, save = decide(time.time() >= deadline,
                                    time.time() - last_save > 60 * self.cfg.save_every_minutes,
                                    self.world, self.device)
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

    def ema_model(self) -> Unet:
        """The EMA network (a Scaled(Unet)), in eval mode, on the training device."""
        return self.ema.module.eval()
