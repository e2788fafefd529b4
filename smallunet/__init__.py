"""smallunet: the U-Net of a diffusion model, built one component at a time.

The public API, in the order the book builds it:

    Normalize, Upsample, Downsample            (chapters 1-2)
    get_sigma_embeds, SigmaEmbedderSinCos      (chapter 3), CondEmbedderLabel
    ResnetBlock                                (chapter 4)
    Attention, AttnBlock                       (chapter 5)
    CondSequential, Unet                       (chapter 6)
    ModelMixin, Scaled, PredX0, PredV          the denoiser interface and its wrappers
    Schedule and its subclasses, training_loop, Trainer   (chapter 7)
    samples, samples_heun                      (chapter 8)
    load_fashion_mnist, load_pretrained, default_device
"""
from .norm import Normalize
from .resample import Upsample, Downsample
from .embedding import get_sigma_embeds, SigmaEmbedderSinCos, CondEmbedderLabel
from .resnet import ResnetBlock
from .attention import Attention, AttnBlock
from .unet import CondSequential, Unet
from .denoiser import ModelMixin, Scaled, PredX0, PredV, alpha
from .schedules import (Schedule, ScheduleLogLinear, ScheduleDDPM, ScheduleLDM,
                        ScheduleSigmoid, ScheduleCosine, sigmas_from_betas)
from .sampling import samples, samples_heun
from .plain_training import generate_train_sample, training_loop
from .train_config import TrainConfig, build_model, build_schedule
from .fast_trainer import Trainer
from .device import default_device, model_device
from .data import load_fashion_mnist
from .pretrained import load_pretrained

__version__ = "0.1.0"

__all__ = [
    "Normalize", "Upsample", "Downsample", "get_sigma_embeds", "SigmaEmbedderSinCos",
    "CondEmbedderLabel", "ResnetBlock", "Attention", "AttnBlock", "CondSequential", "Unet",
    "ModelMixin", "Scaled", "PredX0", "PredV", "alpha", "Schedule", "ScheduleLogLinear",
    "ScheduleDDPM", "ScheduleLDM", "ScheduleSigmoid", "ScheduleCosine", "sigmas_from_betas",
    "samples", "samples_heun", "generate_train_sample", "training_loop", "Trainer", "TrainConfig", "build_model", "build_schedule",
    "default_device", "model_device", "load_fashion_mnist", "load_pretrained",
]
