"""What every denoiser shares (ModelMixin), and wrappers that change what a model
sees or predicts: Scaled, PredX0, PredV.

A denoiser is called as ``model(x, sigma, cond=None)`` with ``x`` of shape
(B, *input_dims) and ``sigma`` holding one noise level for the batch or one per
example. By default it predicts the noise ``eps`` in ``x = x0 + sigma * eps``.
"""
from __future__ import annotations

import torch
from torch import nn

from ._checks import check_int, check_sigma, check_tensor


def alpha(sigma: torch.Tensor) -> torch.Tensor:
    """1 / (1 + sigma^2): the factor that brings x0 + sigma * eps back to unit
    variance when x0 has unit variance (alpha-bar of DDPM)."""
    return 1 / (1 + sigma ** 2)


def _broadcastable(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sigma with 1 or B values -> a shape that broadcasts against x (B, ...)."""
    check_tensor("x", x)
    if x.dim() < 1:
        raise ValueError(f"x must have a batch dimension, got shape {tuple(x.shape)}")
    check_sigma(sigma, x.shape[0])
    if sigma.numel() == 1:
        return sigma.reshape(())                                   # one level for all
    return sigma.reshape((x.shape[0],) + (1,) * (x.dim() - 1))     # (B,) -> (B, 1, ..., 1)


class ModelMixin:
    """Sampling and training helpers for a denoiser with an ``input_dims`` attribute."""

    input_dims: tuple

    def rand_input(self, batchsize: int, *, device=None, dtype=None, generator=None) -> torch.Tensor:
        """Standard normal noise of shape (batchsize, *input_dims)."""
        check_int("batchsize", batchsize, minimum=1)
        if not hasattr(self, "input_dims"):
            raise TypeError(f"{type(self).__name__} has no input_dims attribute, so rand_input "
                            f"cannot know the shape of one example")
        return torch.randn((batchsize,) + tuple(self.input_dims), device=device, dtype=dtype,
                           generator=generator)

    def get_loss(self, x0, sigma, eps, cond=None, loss=nn.MSELoss):
        """Mean squared error between the true noise and the predicted one."""
        return loss()(eps, self(x0 + sigma * eps, sigma, cond=cond))

    def predict_eps(self, x, sigma, cond=None):
        """The noise in ``x`` at level ``sigma``."""
        return self(x, sigma, cond=cond)

    def predict_eps_cfg(self, x, sigma, cond, cfg_scale):
        """predict_eps with classifier-free guidance, s = cfg_scale:
        eps_c + s * (eps_c - eps_uncond).

        With ``cond=None`` or ``cfg_scale == 0`` it is plain predict_eps."""
        if cond is None or cfg_scale == 0:
            return self.predict_eps(x, sigma, cond=cond)
        check_tensor("sigma", sigma)
        if sigma.numel() != 1:
            raise ValueError("classifier-free guidance needs one sigma for "
                             "the whole batch, got sigma of shape "
                             f"{tuple(sigma.shape)}")
        if getattr(self, "cond_embed", None) is None:
            raise ValueError("cfg_scale != 0 needs a conditional model "
                             "(cond_embed is None)")
        uncond = torch.full_like(cond, self.cond_embed.null_cond)  # (B,)
        # one pass of 2B examples: x with its labels, then with the null
        x2, cond2 = torch.cat([x, x]), torch.cat([cond, uncond])
        eps = self.predict_eps(x2, sigma.reshape(()), cond2)  # (2B, ...)
        eps_cond, eps_uncond = eps.chunk(2)              # (B, ...) each
        return eps_cond + cfg_scale * (eps_cond - eps_uncond)


def Scaled(cls: type) -> type:
    """A subclass of ``cls`` that feeds the network sqrt(alpha(sigma)) * x
    instead of x.

    x0 + sigma * eps has a standard deviation near sqrt(1 + sigma^2) (up to
    20 here); scaling it back to about 1 keeps the first layers' inputs at
    the same size at every noise level (the variance-preserving x_t of
    DDPM)."""
    def forward(self, x, sigma, cond=None):
        # a float64 sigma keeps x's dtype
        scale = alpha(_broadcastable(sigma, x)).sqrt().to(x.dtype)
        return cls.forward(self, x * scale, sigma, cond=cond)
    return type(cls.__name__ + "Scaled", (cls,), dict(forward=forward))


def PredX0(cls: type) -> type:
    """A subclass of ``cls`` that predicts the clean image x0 instead of eps."""
    def get_loss(self, x0, sigma, eps, cond=None, loss=nn.MSELoss):
        return loss()(x0, self(x0 + sigma * eps, sigma, cond=cond))

    def predict_eps(self, x, sigma, cond=None):
        x0_hat = self(x, sigma, cond=cond)
        return (x - x0_hat) / _broadcastable(sigma, x)
    return type(cls.__name__ + "PredX0", (cls,), dict(get_loss=get_loss, predict_eps=predict_eps))


def PredV(cls: type) -> type:
    """A subclass of ``cls`` that predicts v = sqrt(alpha) eps - sqrt(1 - alpha) x0
    (Salimans and Ho, 2022) instead of eps."""
    def get_loss(self, x0, sigma, eps, cond=None, loss=nn.MSELoss):
        a = alpha(_broadcastable(sigma, x0))
        v = a.sqrt() * eps - (1 - a).sqrt() * x0
        return loss()(v, self(x0 + sigma * eps, sigma, cond=cond))

    def predict_eps(self, x, sigma, cond=None):
        a = alpha(_broadcastable(sigma, x))
        v_hat = self(x, sigma, cond=cond)
        return a.sqrt() * (v_hat + (1 - a).sqrt() * x)
    return type(cls.__name__ + "PredV", (cls,), dict(get_loss=get_loss, predict_eps=predict_eps))
