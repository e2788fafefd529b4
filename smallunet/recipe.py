"""Deprecated: the recipe moved to ``smallunet.train_config`` (TrainConfig, build_model,
build_schedule) and ``smallunet.train_recipe`` (the learning rate, noise levels and loss
weight, built once from the config). This module re-exports the names it held."""
from ._moved import warn_moved
from .train_config import (LOSS_WEIGHTS, LR_SCHEDULES, PRECISIONS, SIGMA_DISTS,  # noqa: F401
                           TrainConfig, build_model, build_schedule, zero_last_convs)
from .train_recipe import draw_sigmas, loss_weights, lr_factor  # noqa: F401

warn_moved("smallunet.recipe", "smallunet.train_config and smallunet.train_recipe")
