"""Noise schedules: the noise levels sigma that training draws from and sampling
walks down.

Everything is parameterised by sigma, the standard deviation of the noise in
x = x0 + sigma * eps. A DDPM schedule of betas maps to sigma through
alpha_bar_t = prod(1 - beta) and sigma_t = sqrt(1 / alpha_bar_t - 1).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ._checks import check_float, check_floating, check_int


class Schedule:
    """An increasing sequence of noise levels ``sigmas`` (N values)."""

    def __init__(self, sigmas: torch.Tensor):
        _check_increasing(sigmas)
        self.sigmas = sigmas

    def __getitem__(self, i) -> torch.Tensor:
        return self.sigmas[i]

    def __len__(self) -> int:
        return len(self.sigmas)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(N={len(self)}, sigma_min={float(self.sigmas.min()):.4g}, "
                f"sigma_max={float(self.sigmas.max()):.4g})")

    def sample_sigmas(self, steps: int) -> torch.Tensor:
        """``steps + 1`` decreasing noise levels for ``steps`` steps.

        The spacing is "trailing" (Lin et al. 2023, table 2): the first
        level is the largest of the schedule, the others are spaced evenly
        in index down to index 0, and the smallest level (index 0) ends the
        sequence.
        """
        _check_steps(steps, len(self))
        t = 1 - np.arange(0, steps) / steps           # 1, ..., 1/steps
        indices = (len(self) * t).round().astype(np.int64) - 1
        return self[list(indices) + [0]]

    def sample_batch(self, x0: torch.Tensor) -> torch.Tensor:
        """One noise level per example of ``x0``, drawn uniformly from the schedule:
        (B, ...) -> (B,), on x0's device and dtype."""
        check_floating("x0", x0)
        if x0.dim() < 1 or x0.shape[0] < 1:
            raise ValueError(f"x0 must have a batch dimension of at least 1, got shape {tuple(x0.shape)}")
        idx = torch.randint(len(self), (x0.shape[0],))
        return self[idx].to(x0)


def sigmas_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """DDPM's betas -> sigma_t = sqrt(1 / prod_{s<=t}(1 - beta_s) - 1)."""
    return (1 / torch.cumprod(1.0 - betas, dim=0) - 1).sqrt()


class ScheduleLogLinear(Schedule):
    """N levels evenly spaced in log(sigma) from sigma_min to sigma_max."""

    def __init__(self, N: int, sigma_min: float = 0.02,
                 sigma_max: float = 10):
        _check_log_linear(N, sigma_min, sigma_max)
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        lo, hi = math.log10(sigma_min), math.log10(sigma_max)
        super().__init__(torch.logspace(lo, hi, N))


class ScheduleDDPM(Schedule):
    """DDPM's linear betas (Ho et al. 2020); the defaults are theirs."""

    def __init__(self, N: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02):
        _check_n_betas(N, beta_start, beta_end)
        super().__init__(sigmas_from_betas(torch.linspace(beta_start, beta_end, N)))


class ScheduleLDM(Schedule):
    """Latent diffusion's "scaled linear" betas (linear in sqrt(beta))."""

    def __init__(self, N: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012):
        _check_n_betas(N, beta_start, beta_end)
        super().__init__(sigmas_from_betas(torch.linspace(beta_start ** 0.5, beta_end ** 0.5, N) ** 2))


class ScheduleSigmoid(Schedule):
    """Betas following a sigmoid from beta_start to beta_end (GeoDiff)."""

    def __init__(self, N: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02):
        _check_n_betas(N, beta_start, beta_end)
        betas = torch.sigmoid(torch.linspace(-6, 6, N)) * (beta_end - beta_start) + beta_start
        super().__init__(sigmas_from_betas(betas))


class ScheduleCosine(Schedule):
    """The cosine schedule of Nichol and Dhariwal (2021): alpha_bar(t) =
    cos^2((t + 0.008) / 1.008 * pi / 2), betas clipped at max_beta.
    (beta_start and beta_end are unused; kept for smalldiffusion's signature.)"""

    def __init__(self, N: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02,
                 max_beta: float = 0.999):
        check_int("N", N, minimum=1)
        check_float("max_beta", max_beta, low=0.0, high=1.0, low_open=True, high_open=True)

        def alpha_bar(t):
            return np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2
        betas = [min(1 - alpha_bar((i + 1) / N) / alpha_bar(i / N), max_beta) for i in range(N)]
        super().__init__(sigmas_from_betas(torch.tensor(betas, dtype=torch.float32)))


# --- the checks, one call away from the schedules above --------------------------------------
def _check_increasing(sigmas) -> None:
    """A 1-D floating tensor of positive, increasing noise levels."""
    check_floating("sigmas", sigmas)
    if sigmas.dim() != 1 or len(sigmas) < 1:
        raise ValueError(f"sigmas must be a 1-D tensor with at least one value, got shape {tuple(sigmas.shape)}")
    if not bool((sigmas > 0).all()):
        raise ValueError(f"sigmas must be > 0 (log(sigma) feeds the embedding), "
                         f"got min(sigmas)={float(sigmas.min()):.4g}")
    drops = (sigmas[1:] < sigmas[:-1]).nonzero()
    if len(drops):
        i = int(drops[0])
        raise ValueError(f"sigmas must increase (smallest noise first), got sigmas[{i}]="
                         f"{float(sigmas[i]):.4g} > sigmas[{i + 1}]={float(sigmas[i + 1]):.4g}")


def _check_steps(steps, n: int) -> None:
    check_int("steps", steps, minimum=1)
    if steps > n:
        raise ValueError(f"steps={steps} must be at most the schedule's length N={n}")


def _check_log_linear(N, sigma_min, sigma_max) -> None:
    check_int("N", N, minimum=1)
    check_float("sigma_min", sigma_min, low=0.0, low_open=True)
    check_float("sigma_max", sigma_max, low=0.0, low_open=True)
    if sigma_min >= sigma_max:
        raise ValueError(f"sigma_min={sigma_min} must be smaller than sigma_max={sigma_max}")


def _check_n_betas(N, beta_start, beta_end):
    check_int("N", N, minimum=1)
    check_float("beta_start", beta_start, low=0.0, high=1.0, low_open=True, high_open=True)
    check_float("beta_end", beta_end, low=0.0, high=1.0, low_open=True, high_open=True)
    if beta_start > beta_end:
        raise ValueError(f"beta_start={beta_start} must be <= beta_end={beta_end}")
