"""The samplers: smalldiffusion's generalised sampler (Permenter and Yuan, 2024)
and EDM's second-order Heun sampler (Karras et al., 2022).

``samples`` covers the common samplers through two numbers:
  DDIM         gam=1, mu=0     (deterministic)
  DDPM         gam=1, mu=0.5   (adds fresh noise at each step)
  accelerated  gam=2, mu=0     (a momentum on the predicted noise)
Each step moves x_t from sigma to sigma_prev along the predicted noise eps_av,
first down to sigma_p <= sigma_prev and then back up to sigma_prev with fresh
noise of standard deviation eta = sqrt(sigma_prev^2 - sigma_p^2).
``samples_heun`` is the trapezoid rule on the probability-flow ODE
dx/dsigma = eps(x, sigma): two network evaluations per step, error O(h^2).

The samplers come first; below them, the two calls they share (the model's
noise prediction, the noise drawn on the CPU) and their argument checks.
"""
from __future__ import annotations

from functools import partial
from itertools import pairwise
from typing import Iterator

import torch
from torch import nn

from ._checks import check_float, check_floating, check_int, check_tensor
from .device import model_device


def samples(
    model: nn.Module,
    sigmas: torch.Tensor,            # N+1 decreasing levels, N steps
    gam: float = 1.,                 # >= 1 suggested; 1: no momentum
    mu: float = 0.,                  # in [0, 1): 0 DDIM, 0.5 DDPM
    cfg_scale: float = 0.,           # 0: no classifier-free guidance
    batchsize: int = 1,
    xt: torch.Tensor | None = None,  # start here instead of pure noise
    cond: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """Yield x_t after each of the ``len(sigmas) - 1`` steps; the last one
    is the sample. The arguments are checked when ``samples`` is called.

    The model runs in eval mode on its own device; the samples come out
    there too, in float32 (or xt's dtype) whatever the model's precision.
    The noise is drawn on the CPU, from ``generator`` (a CPU generator) or
    the global one. Usage, with ``sigmas = schedule.sample_sigmas(20)``:
    ``*xt, x0 = samples(model, sigmas, gam=1.6, batchsize=64)``.
    """
    sigmas, xt, predict_eps, noise = _check_sampling(
        model, sigmas, cfg_scale, batchsize, xt, cond, generator)
    gam = check_float("gam", gam)
    mu = check_float("mu", mu, low=0.0, high=1.0, high_open=True)

    @torch.no_grad()
    def loop(xt):
        model.eval()
        if xt is None:                # pure noise at the largest level
            xt = noise(batchsize) * sigmas[0].item()
        eps = None
        for i, (sig, sig_prev) in enumerate(pairwise(sigmas)):
            eps_prev, eps = eps, predict_eps(xt, sig)
            eps_av = eps * gam + eps_prev * (1 - gam) if i > 0 else eps
            # sig_p solves sig_prev = sig**mu * sig_p**(1-mu)
            sig_p = (sig_prev / sig ** mu) ** (1 / (1 - mu))
            # clamp: in a zero-length step (sig_prev == sig) sig_p can
            # round just above sig_prev
            eta = (sig_prev ** 2 - sig_p ** 2).clamp(min=0).sqrt()
            xt = (xt - (sig - sig_p).to(xt) * eps_av
                  + eta.to(xt) * noise(len(xt)))
            yield xt
    return loop(xt)


def samples_heun(
    model: nn.Module,
    sigmas: torch.Tensor,            # N+1 decreasing levels, N steps
    batchsize: int = 1,
    xt: torch.Tensor | None = None,  # start here instead of pure noise
    cond: torch.Tensor | None = None,
    cfg_scale: float = 0.,           # 0: no classifier-free guidance
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """EDM's deterministic second-order sampler (Karras et al. 2022, Alg. 1)
    in this book's sigma: the trapezoid rule (Heun's method) on the
    probability-flow ODE dx/dsigma = eps(x, sigma). Each step takes an Euler
    step to sigma_prev, evaluates eps there too, and moves x along the mean
    of the two slopes; a step to sigma_prev = 0 stays an Euler step (the
    model is never called at 0), and a step of length zero costs nothing.
    2 network evaluations per step (NFE = 2N, or 2N - 1 when the last level
    is 0).

    Yields x_t after each of the ``len(sigmas) - 1`` steps, the last being
    the sample; the same arguments, checks, devices and dtypes as
    ``samples``.
    Usage: ``*xt, x0 = samples_heun(model, sigmas, batchsize=64)``.
    """
    sigmas, xt, predict_eps, noise = _check_sampling(
        model, sigmas, cfg_scale, batchsize, xt, cond, generator)

    @torch.no_grad()
    def loop(x):
        model.eval()
        if x is None:                 # pure noise at the largest level
            x = noise(batchsize) * sigmas[0].item()
        for sig, sig_prev in pairwise(sigmas):
            if sig_prev == sig:       # a zero-length step: nothing moves
                yield x
                continue
            h = (sig_prev - sig).to(x)          # < 0: sigma decreases
            d = predict_eps(x, sig)             # the slope at the start
            x_euler = x + h * d                 # Euler (DDIM) to sigma_prev
            if sig_prev == 0:
                x = x_euler
            else:                               # trapezoid: mean slope
                x = x + h * (d + predict_eps(x_euler, sig_prev)) / 2
            yield x
    return loop(xt)


# The pieces both samplers share: the model call and the noise.

def _eps(model, cond, cfg_scale, model_dtype, x, sig) -> torch.Tensor:
    """The predicted noise at (x, sig): the model sees x in its own precision (sigma in
    x's); the prediction comes back in x's dtype, where the samplers do their update."""
    return model.predict_eps_cfg(x.to(model_dtype), sig.to(x), cond, cfg_scale).to(x.dtype)


def _noise(model, generator, device, dtype, n) -> torch.Tensor:
    """n draws of N(0, I) in the model's input shape, made on the CPU (as smalldiffusion
    does, so a seed gives the same noise on any device), then moved to device and dtype."""
    z = model.rand_input(n) if generator is None else model.rand_input(n, generator=generator)
    return z.to(device=device, dtype=dtype)


# The argument checks, one call away from each sampler.

def _check_sigmas(sigmas) -> torch.Tensor:
    from .schedules import Schedule
    if isinstance(sigmas, Schedule):
        raise TypeError(f"sigmas must be the levels of the steps, not the schedule itself: call "
                        f"schedule.sample_sigmas(steps), e.g. {type(sigmas).__name__}(...).sample_sigmas(20)")
    if not isinstance(sigmas, torch.Tensor):
        try:
            sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"sigmas must be a 1-D tensor of noise levels, "
                            f"got {type(sigmas).__name__}") from None
    if sigmas.dim() != 1 or len(sigmas) < 2:
        raise ValueError(f"sigmas must be 1-D with at least 2 values (N steps need N+1), "
                         f"got shape {tuple(sigmas.shape)}")
    if not sigmas.is_floating_point():
        sigmas = sigmas.float()
    if not bool(torch.isfinite(sigmas).all()):
        raise ValueError(f"sigmas must be finite, got {sigmas.tolist()}")
    # Equal neighbours are allowed: sample_sigmas(steps) ends with two copies of the
    # smallest level when steps > 2N/3, a step of length zero.
    rises = (sigmas[1:] > sigmas[:-1]).nonzero()
    if len(rises):
        i = int(rises[0])
        raise ValueError(f"sigmas must decrease (largest noise first), got sigmas[{i}]="
                         f"{float(sigmas[i]):.4g} < sigmas[{i + 1}]={float(sigmas[i + 1]):.4g}")
    if not bool((sigmas[:-1] > 0).all()) or not bool(sigmas[-1] >= 0):
        raise ValueError(f"sigmas must be > 0 (only the last may be 0: the model is never called "
                         f"there), got {sigmas.tolist()}")
    return sigmas


def _check_sampling(model, sigmas, cfg_scale, batchsize, xt, cond, generator):
    """The checks every sampler makes, with the same messages. Returns the checked
    (sigmas, xt) (xt None: start from noise) and the two calls every sampler makes:
    predict_eps(x, sigma), the model's noise prediction with cond and cfg_scale
    bound, and noise(n), n draws of N(0, I) from ``generator``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for method in ("rand_input", "predict_eps_cfg"):
        if not callable(getattr(model, method, None)):
            raise TypeError(f"model must have a {method} method (a ModelMixin such as Unet), "
                            f"{type(model).__name__} has none")
    sigmas = _check_sigmas(sigmas)
    cfg_scale = check_float("cfg_scale", cfg_scale, low=0.0)
    check_int("batchsize", batchsize, minimum=1)
    if generator is not None and not (isinstance(generator, torch.Generator) and generator.device.type == "cpu"):
        raise TypeError(f"generator must be a CPU torch.Generator (the noise is drawn on the CPU), "
                        f"got {generator!r}")
    device = model_device(model)
    params = list(model.parameters())
    model_dtype = params[0].dtype if params else torch.float32   # the model's precision

    if xt is None:
        dtype = torch.float32 if model_dtype in (torch.float16, torch.bfloat16) else model_dtype
    else:
        check_floating("xt", xt)
        expected = tuple(getattr(model, "input_dims", xt.shape[1:]))
        if xt.dim() != 1 + len(expected) or tuple(xt.shape[1:]) != expected:
            raise ValueError(f"xt must have shape (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(xt.shape)}")
        if batchsize not in (1, xt.shape[0]):
            raise ValueError(f"batchsize={batchsize} disagrees with xt of batch {xt.shape[0]} "
                             f"(shape {tuple(xt.shape)}); leave batchsize out when giving xt")
        xt, dtype = xt.to(device), xt.dtype
    batch = batchsize if xt is None else xt.shape[0]
    if cond is not None:
        check_tensor("cond", cond)
        if cond.is_floating_point() or cond.dtype == torch.bool:
            raise TypeError(f"cond must hold integer class labels, got dtype {cond.dtype} "
                            f"(use cond.long())")
        if cond.shape[:1] != (batch,):
            raise ValueError(f"cond must have one label per sample ({batch},), "
                             f"got shape {tuple(cond.shape)}")
        cond = cond.to(device)
    elif cfg_scale != 0:
        raise ValueError(f"cfg_scale={cfg_scale} needs labels: pass cond")
    if cfg_scale != 0 and getattr(model, "cond_embed", None) is None:
        raise ValueError(f"cfg_scale={cfg_scale} needs a conditional model (cond_embed is None)")
    num_classes = getattr(getattr(model, "cond_embed", None), "num_classes", None)
    if cond is not None and num_classes is not None and len(cond) and \
            (int(cond.min()) < 0 or int(cond.max()) >= num_classes):
        raise ValueError(f"cond must hold labels in [0, {num_classes}), got values from "
                         f"{int(cond.min())} to {int(cond.max())}")
    return (sigmas, xt, partial(_eps, model, cond, cfg_scale, model_dtype),
            partial(_noise, model, generator, device, dtype))
