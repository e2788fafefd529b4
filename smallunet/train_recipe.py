"""The recipe's three curves, built once from a TrainConfig and handed to the loop:
the learning rate over the global step (``LearningRate``), the noise levels a batch is
shown (``NoiseLevelDraw``) and the weight of each example's loss by its noise level
(``LossWeight``).

    lr = LearningRate.from_config(cfg, total_steps=10_000)
    draw = NoiseLevelDraw.from_config(cfg, build_schedule(cfg).sigmas)
    weight = LossWeight.from_config(cfg)
    lr(step), draw(batch, generator), weight(sigma)

Each holds only the numbers it needs and is a pure function of them and its argument, so
a run spread over several sessions resumes on the same curve. ``lr_factor``,
``draw_sigmas`` and ``loss_weights`` are the same curves called with a whole config.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._checks import check_tensor
from .train_config import LOSS_WEIGHTS, LR_SCHEDULES, SIGMA_DISTS, TrainConfig


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


@dataclass(frozen=True)
class LearningRate:
    """The learning rate at a global step: ``peak * factor(step)``.

    Warm-up: linear from 0 over ``warmup_steps`` starting at ``warmup_start``. Then
    'constant' holds 1; 'cosine' and 'linear' decay to ``min_ratio`` at ``total_steps``;
    'wsd' holds 1 until ``decay_start`` and decays linearly to ``min_ratio`` over
    ``decay_steps``."""
    peak: float
    schedule: str = "constant"
    warmup_steps: int = 0
    warmup_start: int = 0
    total_steps: int | None = None     # 'cosine', 'linear': where the decay ends
    decay_start: int | None = None     # 'wsd': None holds the rate
    decay_steps: int = 1000
    min_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        return self.peak * self.factor(step)

    def factor(self, step: int) -> float:
        """The learning rate at ``step`` as a fraction of ``peak``."""
        lo = self.min_ratio
        warm = 1.0
        if self.warmup_steps and step >= self.warmup_start:
            warm = min(1.0, (step - self.warmup_start + 1) / self.warmup_steps)
        if self.schedule == "constant":
            return warm
        if self.schedule == "wsd":
            if self.decay_start is None or step < self.decay_start:
                return warm
            t = min(1.0, (step - self.decay_start) / self.decay_steps)
            return warm * (1 - t * (1 - lo))
        t = min(1.0, step / self.total_steps)
        shape = 0.5 * (1 + math.cos(math.pi * t)) if self.schedule == "cosine" else 1 - t
        return warm * (lo + (1 - lo) * shape)

    def __post_init__(self):
        _check_choice("lr_schedule", self.schedule, LR_SCHEDULES)
        if self.schedule in ("cosine", "linear") and self.total_steps is None:
            raise ValueError(f"lr_schedule={self.schedule!r} needs lr_total_steps or a budget in "
                             f"epochs or max_steps (a budget in minutes alone has no known end)")

    @classmethod
    def from_config(cls, cfg: TrainConfig, total_steps: int | None = None) -> "LearningRate":
        """The config's curve; ``total_steps`` is the budget's (``lr_total_steps``, then
        it, then ``max_steps`` end a 'cosine' or 'linear' decay)."""
        total = cfg.lr_total_steps or total_steps or cfg.max_steps
        return cls(cfg.lr, cfg.lr_schedule, cfg.warmup_steps, cfg.warmup_start,
                   total if cfg.lr_schedule in ("cosine", "linear") else None,
                   cfg.decay_start, cfg.decay_steps, cfg.lr_min_ratio)


@dataclass(frozen=True, eq=False)
class NoiseLevelDraw:
    """(batch,) training noise levels: 'schedule' picks the schedule's ``sigmas``
    uniformly; 'lognormal' draws ln sigma ~ N(mean, std^2), clamped to
    [sigma_min, sigma_max]; 'mix' takes the schedule's pick with probability ``mix``,
    else the lognormal one. On the device of ``sigmas``."""
    sigmas: torch.Tensor
    dist: str = "schedule"
    mean: float = -0.6
    std: float = 1.2
    sigma_min: float = 0.01
    sigma_max: float = 20.0
    mix: float = 0.2

    def __call__(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        dev = self.sigmas.device
        idx = torch.randint(len(self.sigmas), (batch,), device=dev, generator=generator)
        uniform = self.sigmas[idx]
        if self.dist == "schedule":
            return uniform
        z = torch.randn(batch, device=dev, generator=generator)
        lognormal = (self.mean + self.std * z).exp().clamp(self.sigma_min, self.sigma_max)
        if self.dist == "lognormal":
            return lognormal
        pick = torch.rand(batch, device=dev, generator=generator) < self.mix
        return torch.where(pick, uniform, lognormal)

    def __post_init__(self):
        check_tensor("sigmas", self.sigmas)
        _check_choice("sigma_dist", self.dist, SIGMA_DISTS)

    @classmethod
    def from_config(cls, cfg: TrainConfig, schedule_sigmas: torch.Tensor) -> "NoiseLevelDraw":
        return cls(schedule_sigmas, cfg.sigma_dist, cfg.sigma_mean, cfg.sigma_std,
                   cfg.sigma_min, cfg.sigma_max, cfg.sigma_mix)


@dataclass(frozen=True)
class LossWeight:
    """Per-example weight of the eps-MSE at noise level ``sigma`` (None: all 1).

    With x = x0 + sigma * eps the signal-to-noise ratio is 1/sigma^2 and the x0 error
    is sigma times the eps error, so an x0-space weight lambda becomes lambda * sigma^2
    here: min-SNR-gamma gives min(1, gamma * sigma^2); EDM's lambda gives
    (sigma^2 + sigma_data^2) / sigma_data^2."""
    kind: str = "none"
    min_snr_gamma: float = 5.0
    sigma_data: float = 0.5

    def __call__(self, sigma: torch.Tensor) -> torch.Tensor | None:
        if self.kind == "none":
            return None
        s2 = sigma.float() ** 2
        if self.kind == "min_snr":
            return (self.min_snr_gamma * s2).clamp(max=1.0)
        return (s2 + self.sigma_data ** 2) / self.sigma_data ** 2

    def __post_init__(self):
        _check_choice("loss_weight", self.kind, LOSS_WEIGHTS)

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> "LossWeight":
        return cls(cfg.loss_weight, cfg.min_snr_gamma, cfg.sigma_data)


# --- the same curves, called with a whole config (chapter 7 plots them) ------------------
def lr_factor(cfg: TrainConfig, step: int, total_steps: int | None = None) -> float:
    """The learning rate at global ``step`` as a fraction of ``cfg.lr``
    (``LearningRate.factor``)."""
    return LearningRate.from_config(cfg, total_steps).factor(step)


def draw_sigmas(cfg: TrainConfig, schedule_sigmas: torch.Tensor, batch: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch,) training noise levels from ``cfg.sigma_dist``, on the schedule's device
    (``NoiseLevelDraw``)."""
    return NoiseLevelDraw.from_config(cfg, schedule_sigmas)(batch, generator)


def loss_weights(cfg: TrainConfig, sigma: torch.Tensor) -> torch.Tensor | None:
    """Per-example weight of the eps-MSE at noise level ``sigma`` (``LossWeight``)."""
    return LossWeight.from_config(cfg)(sigma)
