"""The loss of one training step, and smalldiffusion's plain training loop around it.

Training a denoiser is regression: pick a clean image x0, a noise level sigma from
the schedule and Gaussian noise eps, show the model x0 + sigma * eps, and ask it for
eps (mean squared error). ``training_loop`` is that, as a generator that yields
its state before each optimizer step so the caller can log, plot or keep an EMA.
``denoiser_loss`` is the one training step's loss that both ``training_loop`` and
the fast trainer (``smallunet.fast_trainer``, with EMA and checkpoints) use: the
model's own ``get_loss`` per example, optionally weighted by noise level.
"""
from __future__ import annotations

from functools import partial
from types import SimpleNamespace
from typing import Iterable, Iterator

import torch
from torch import nn

from ._checks import check_float, check_floating, check_int, check_tensor
from .device import model_device
from .schedules import Schedule


def training_loop(
    loader: Iterable,                # batches: images, or (images, labels)
    model: nn.Module,                # a ModelMixin such as Scaled(Unet)
    schedule: Schedule,
    epochs: int = 10000,
    lr: float = 1e-3,                # AdamW's, when no optimizer is given
    conditional: bool = False,       # batches are (images, labels)
    optimizer: torch.optim.Optimizer | None = None,
) -> Iterator[SimpleNamespace]:
    """smalldiffusion's training loop in plain PyTorch.

    For each batch of ``loader`` (moved to the model's device) it computes
    the loss and yields a namespace holding ``loss``, ``x0``, ``sigma``,
    ``eps``, ``cond``, ``model``, ``optimizer`` and the ``epoch``, then
    steps AdamW. The arguments are checked when it is called.
    """
    _check_training_loop(loader, model, schedule, epochs, lr, optimizer)
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr)

    def loop():
        device = model_device(model)
        for epoch in range(epochs):
            for batch in loader:
                model.train()
                optimizer.zero_grad()
                x0, sigma, eps, cond = generate_train_sample(
                    _to(batch, device), schedule, conditional)
                loss = denoiser_loss(model, x0, sigma, eps, cond=cond)
                yield SimpleNamespace(loss=loss, x0=x0, sigma=sigma,
                                      eps=eps, cond=cond, model=model,
                                      optimizer=optimizer, epoch=epoch)
                loss.backward()
                optimizer.step()
    return loop()


def denoiser_loss(model: nn.Module, x0: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor,
                  cond: torch.Tensor | None = None, weight: torch.Tensor | None = None,
                  net: nn.Module | None = None) -> torch.Tensor:
    """The mean over the batch of ``weight * loss_per_example``, where the loss per
    example is the model's own ``get_loss`` (eps-MSE for Unet, x0-MSE for PredX0,
    v-MSE for PredV) averaged over the pixels. ``weight`` is (B,) or None (all 1,
    which is smalldiffusion's loss). ``net`` is what the forward pass runs through
    (a DDP or compiled wrapper of ``model``); default ``model`` itself."""
    per_pixel = type(model).get_loss(net if net is not None else model, x0, sigma, eps,
                                     cond=cond, loss=partial(nn.MSELoss, reduction="none"))
    if weight is None:
        return per_pixel.float().mean()
    per_example = per_pixel.float().flatten(1).mean(1)              # (B,)
    return (weight.reshape(-1).to(per_example) * per_example).mean()


def generate_train_sample(x0, schedule: Schedule, conditional: bool = False, *, generator=None):
    """A batch -> (x0, sigma, eps, cond).

    ``x0`` is a tensor (B, ...) or, when ``conditional``, a pair (images, labels).
    ``sigma`` is drawn uniformly from the schedule, shaped (B, 1, ..., 1) to
    broadcast against x0; ``eps`` is standard normal noise shaped like x0.
    """
    x0, cond = _check_batch(x0, schedule, conditional)
    if generator is None:
        sigma = schedule.sample_batch(x0)
        eps = torch.randn_like(x0)
    else:
        sigma = schedule[torch.randint(len(schedule), (x0.shape[0],), generator=generator,
                                       device=generator.device).cpu()].to(x0)
        eps = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype).to(x0.device)
    sigma = sigma.reshape((-1,) + (1,) * (x0.dim() - 1))     # (B, 1, ..., 1)
    return x0, sigma, eps, cond


# --- the checks, one call away from the functions above ----------------------------------
def _check_training_loop(loader, model, schedule, epochs, lr, optimizer) -> None:
    """training_loop's arguments, checked at the call (not at the first next())."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(getattr(type(model), "get_loss", None)):
        raise TypeError(f"model must have a get_loss method (a ModelMixin such as Unet), "
                        f"{type(model).__name__} has none")
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    if isinstance(loader, torch.Tensor) or not hasattr(loader, "__iter__"):
        raise TypeError(f"loader must be an iterable of batches such as a DataLoader, got {type(loader).__name__}")
    check_int("epochs", epochs, minimum=1)
    check_float("lr", lr, low=0.0, low_open=True)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")


def _check_batch(x0, schedule, conditional: bool):
    """A batch -> (images, labels or None): a tensor, a 1-item list (TensorDataset's),
    or for a conditional model a pair (images, labels) of one label per image."""
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    if conditional:
        if not isinstance(x0, (tuple, list)) or len(x0) != 2:
            what = f"a {type(x0).__name__} of {len(x0)} items" if isinstance(x0, (tuple, list)) \
                else type(x0).__name__
            raise ValueError(f"a conditional batch must be a pair (images, labels), got {what}")
        x0, cond = x0
        check_tensor("labels", cond)
        if cond.shape[:1] != x0.shape[:1]:
            raise ValueError(f"labels must have one entry per image ({x0.shape[0]},), got shape {tuple(cond.shape)}")
    else:
        cond = None
        if isinstance(x0, (tuple, list)):
            if len(x0) != 1:   # TensorDataset(images) gives 1-item lists; unwrap those
                raise ValueError(f"an unconditional batch must be a tensor of images, got a "
                                 f"{type(x0).__name__} of {len(x0)} items; for (images, labels) "
                                 f"batches pass conditional=True")
            x0 = x0[0]
    check_floating("x0", x0)
    return x0, cond


def _to(batch, device):
    if isinstance(batch, (tuple, list)):
        return type(batch)(b.to(device) for b in batch)
    return batch.to(device)
