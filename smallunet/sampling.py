"""The generalised sampler of smalldiffusion (Permenter and Yuan, 2024).

One loop covers the common samplers through two numbers:
  DDIM         gam=1, mu=0     (deterministic)
  DDPM         gam=1, mu=0.5   (adds fresh noise at each step)
  accelerated  gam=2, mu=0     (a momentum on the predicted noise)
Each step moves x_t from sigma to sigma_prev along the predicted noise eps_av,
first down to sigma_p <= sigma_prev and then back up to sigma_prev with fresh
noise of standard deviation eta = sqrt(sigma_prev^2 - sigma_p^2).
"""
from __future__ import annotations

from itertools import pairwise
from typing import Iterator

import torch
from torch import nn

from ._checks import check_float, check_int, check_tensor
from .device import model_device


def _check_sigmas(sigmas) -> torch.Tensor:
    if not isinstance(sigmas, torch.Tensor):
        try:
            sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"sigmas must be a 1-D tensor of noise levels, got {type(sigmas).__name__}") from None
    if sigmas.dim() != 1 or len(sigmas) < 2:
        raise ValueError(f"sigmas must be 1-D with at least 2 values (N steps need N+1), "
                         f"got shape {tuple(sigmas.shape)}")
    if not bool((sigmas[1:] < sigmas[:-1]).all()):
        raise ValueError(f"sigmas must decrease strictly (largest noise first), got {sigmas.tolist()}")
    if not bool((sigmas >= 0).all()):
        raise ValueError(f"sigmas must be >= 0, got {sigmas.tolist()}")
    return sigmas


@torch.no_grad()
def samples(model: nn.Module,
            sigmas: torch.Tensor,            # N+1 decreasing levels for N steps
            gam: float = 1.,                 # >= 1 suggested; 1 is no momentum
            mu: float = 0.,                  # in [0, 1): 0 deterministic, 0.5 DDPM
            cfg_scale: float = 0.,           # 0 means no classifier-free guidance
            batchsize: int = 1,
            xt: torch.Tensor | None = None,  # start here instead of pure noise
            cond: torch.Tensor | None = None,
            generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Yield x_t after each of the ``len(sigmas) - 1`` steps; the last one is the sample.

    The model runs in eval mode on its own device; the samples come out there too.
    Usage: ``*xt, x0 = samples(model, schedule.sample_sigmas(20), gam=1.6, batchsize=64)``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    sigmas = _check_sigmas(sigmas)
    gam = check_float("gam", gam)
    mu = check_float("mu", mu, low=0.0, high=1.0, high_open=True)
    cfg_scale = check_float("cfg_scale", cfg_scale)
    check_int("batchsize", batchsize, minimum=1)
    model.eval()
    device = model_device(model)
    dtype = next(model.parameters()).dtype if any(True for _ in model.parameters()) else torch.float32
    if not dtype.is_floating_point or dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32

    def noise(n):
        return model.rand_input(n, generator=generator).to(device=device, dtype=dtype)

    if xt is None:
        xt = noise(batchsize) * sigmas[0].item()
    else:
        check_tensor("xt", xt)
        expected = tuple(getattr(model, "input_dims", xt.shape[1:]))
        if xt.dim() != 1 + len(expected) or tuple(xt.shape[1:]) != expected:
            raise ValueError(f"xt must have shape (B, {', '.join(map(str, expected))}), got {tuple(xt.shape)}")
        xt = xt.to(device)
    if cond is not None:
        check_tensor("cond", cond)
        if cond.shape[:1] != xt.shape[:1]:
            raise ValueError(f"cond must have one label per sample ({xt.shape[0]},), got shape {tuple(cond.shape)}")
        cond = cond.to(xt.device)
    elif cfg_scale != 0:
        raise ValueError(f"cfg_scale={cfg_scale} needs labels: pass cond")

    eps = None
    for i, (sig, sig_prev) in enumerate(pairwise(sigmas)):
        eps_prev, eps = eps, model.predict_eps_cfg(xt, sig.to(xt), cond, cfg_scale)
        eps_av = eps * gam + eps_prev * (1 - gam) if i > 0 else eps
        sig_p = (sig_prev / sig ** mu) ** (1 / (1 - mu))   # sig_prev = sig**mu * sig_p**(1-mu)
        eta = (sig_prev ** 2 - sig_p ** 2).sqrt()
        xt = xt - (sig - sig_p).to(xt) * eps_av + eta.to(xt) * noise(xt.shape[0])
        yield xt
