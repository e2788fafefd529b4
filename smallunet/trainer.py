"""Deprecated: the trainer moved to ``smallunet.fast_trainer`` (the loop), with its parts
beside it: ``ema``, ``distributed``, ``train_state``, ``train_data``, ``train_recipe``
and ``train_config``. This module re-exports the names it held."""
from ._moved import warn_moved
from .device import auto_precision, autocast, bf16_supported, default_device, machine_name  # noqa: F401
from .distributed import DECIDE_EVERY  # noqa: F401
from .ema import ema_multi_avg_fn  # noqa: F401
from .fast_trainer import Trainer  # noqa: F401
from .cpu_speedups import use_fast_dropout  # noqa: F401
from .plain_training import denoiser_loss  # noqa: F401
from .runrecord import RunRecord  # noqa: F401
from .train_config import TrainConfig, build_model, build_schedule  # noqa: F401
from .train_data import check_labels, check_training_data  # noqa: F401
from .train_recipe import draw_sigmas, loss_weights, lr_factor  # noqa: F401
from .train_state import RESUMABLE_CHANGES, graft_unconditional  # noqa: F401
from .unet import Unet  # noqa: F401

warn_moved("smallunet.trainer", "smallunet.fast_trainer (and ema, distributed, train_state, train_data, "
           "train_recipe, train_config)")
