"""Deprecated: moved to ``smallunet.plain_training`` (the loss of one step and
smalldiffusion's plain training loop). This module re-exports the names it held."""
from ._moved import warn_moved
from .plain_training import denoiser_loss, generate_train_sample, training_loop  # noqa: F401

warn_moved("smallunet.training", "smallunet.plain_training")
