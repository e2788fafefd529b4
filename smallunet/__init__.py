"""smallunet: the U-Net of a diffusion model, built one component at a time."""
from .norm import Normalize
from .resample import Upsample, Downsample
from .embedding import get_sigma_embeds, SigmaEmbedderSinCos, CondEmbedderLabel
from .resnet import ResnetBlock
from .attention import Attention, AttnBlock
from .unet import CondSequential, Unet
from .wrappers import ModelMixin, Scaled, PredX0, PredV, alpha
from .schedules import (Schedule, ScheduleLogLinear, ScheduleDDPM, ScheduleLDM,
                        ScheduleSigmoid, ScheduleCosine, sigmas_from_betas)
from .sampling import samples
from .training import generate_train_sample, training_loop
from .device import default_device, model_device
