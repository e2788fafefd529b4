"""The training configuration: one dataclass that names everything a run needs (the
model, the noise schedule, the optimizer, the recipe's curves, the budget and how it
runs), checked field by field, and the two things built straight from it.

    cfg = TrainConfig(epochs=25, lr_schedule="cosine", warmup_steps=500, dropout=0.0,
                      sigma_dist="mix", loss_weight="min_snr")
    model, schedule = build_model(cfg), build_schedule(cfg)

The curves it sets (learning rate, noise levels, loss weight) are built from it once, in
``train_recipe``; ``pretrained.py`` and the command line need only this module.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import torch
from torch import nn

from ._checks import check_float, check_int
from .embedding import CondEmbedderLabel
from .schedules import ScheduleLogLinear
from .denoiser import Scaled
from .resnet import ResnetBlock
from .unet import Unet

LR_SCHEDULES = ("constant", "cosine", "linear", "wsd")
SIGMA_DISTS = ("schedule", "lognormal", "mix")
LOSS_WEIGHTS = ("none", "min_snr", "edm")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def _help(text: str, **kw):
    return field(metadata={"help": text}, **kw)


@dataclass
class TrainConfig:
    """The recipe. Defaults are the seed's: Scaled(Unet)(28, 1, 1, ch=64,
    ch_mult=(1, 1, 2), attn_resolutions=(14,)), ScheduleLogLinear(N=800, sigma_min=0.01, sigma_max=20),
    AdamW lr 7e-4 (constant), batch 1024, EMA 0.999, dropout 0.1, random horizontal
    flips, noise levels drawn uniformly from the schedule, plain eps-MSE, 300 epochs.

    Budgets: ``epochs`` and ``max_steps`` are totals over the whole run, resumed
    sessions included; ``minutes`` is the wall-clock limit of one invocation.
    Training stops at whichever is reached first."""
    # --- the model
    in_dim: int = _help("height and width of the images", default=28)
    in_ch: int = _help("channels of the images", default=1)
    ch: int = _help("channels of the U-Net's first level (a multiple of 32)", default=64)
    ch_mult: tuple = _help("channel multiplier per level", default=(1, 1, 2))
    attn_resolutions: tuple = _help("resolutions with an AttnBlock after each ResnetBlock", default=(14,))
    dropout: float = _help("dropout in the ResnetBlocks, in [0, 1)", default=0.1)
    zero_init: bool = _help("zero the last convolution of every ResnetBlock and the output "
                            "convolution at initialisation (DDPM's init)", default=False)
    num_classes: int = _help("0: unconditional; else a CondEmbedderLabel over this many classes", default=0)
    label_dropout: float = _help("probability of the null label while training (conditional only)", default=0.1)
    # --- the noise schedule and the noise levels shown in training
    sigma_min: float = _help("smallest noise level of the schedule", default=0.01)
    sigma_max: float = _help("largest noise level of the schedule (where sampling starts)", default=20.0)
    N: int = _help("number of levels of the log-linear schedule", default=800)
    sigma_dist: str = _help("training noise levels: 'schedule' (uniform over the schedule's levels), "
                            "'lognormal' (ln sigma ~ N(sigma_mean, sigma_std), clamped to "
                            "[sigma_min, sigma_max]) or 'mix' (lognormal, and the schedule's draw "
                            "with probability sigma_mix)", default="schedule")
    sigma_mean: float = _help("mean of ln sigma for the lognormal draw", default=-0.6)
    sigma_std: float = _help("standard deviation of ln sigma for the lognormal draw", default=1.2)
    sigma_mix: float = _help("share of the schedule's uniform draw in the 'mix' distribution", default=0.2)
    loss_weight: str = _help("per-example weight of the eps-MSE: 'none' (smalldiffusion's), "
                             "'min_snr' (min(SNR, gamma) / SNR, Hang et al. 2023) or 'edm' "
                             "((sigma^2 + sigma_data^2) / sigma_data^2, Karras et al. 2022)",
                             default="none")
    min_snr_gamma: float = _help("gamma of min-SNR weighting", default=5.0)
    sigma_data: float = _help("standard deviation of the data, for the 'edm' weight", default=0.5)
    # --- the optimizer
    lr: float = _help("peak learning rate of AdamW", default=7e-4)
    lr_schedule: str = _help("'constant', 'cosine' or 'linear' decay to lr*lr_min_ratio over "
                             "lr_total_steps, or 'wsd' (warm-up, stable, decay over decay_steps "
                             "from decay_start)", default="constant")
    warmup_steps: int = _help("linear warm-up steps from the global step warmup_start", default=0)
    warmup_start: int = _help("global step where the warm-up starts (a re-warm-up on a fresh "
                              "optimizer starts at the resumed step)", default=0)
    lr_total_steps: int | None = _help("steps of a cosine/linear schedule; None: the budget's total", default=None)
    decay_start: int | None = _help("'wsd': the global step where the decay starts; None: hold the rate", default=None)
    decay_steps: int = _help("'wsd': steps of the final decay", default=1000)
    lr_min_ratio: float = _help("final learning rate as a fraction of lr", default=0.0)
    weight_decay: float = _help("AdamW's weight decay", default=0.01)
    batch_size: int = _help("global batch, split across processes under DDP", default=1024)
    ema_decay: float = _help("EMA decay per step (about 1/(1-decay) steps of memory)", default=0.999)
    ema_warmup: bool = _help("EMA decay min(ema_decay, (1 + n) / (10 + n)) after n updates", default=True)
    hflip: bool = _help("random horizontal flips", default=True)
    # --- the budget
    epochs: float | None = _help("budget in epochs, in total", default=300)
    minutes: float | None = _help("budget in wall-clock minutes, for this invocation", default=None)
    max_steps: int | None = _help("budget in optimizer steps, in total", default=None)
    # --- how it runs
    precision: str = _help("'auto' (bf16 where it is native, fp16 with gradient scaling on a GPU "
                           "without it, else fp32), 'bf16', 'fp16' or 'fp32'", default="auto")
    channels_last: bool | None = _help("channels_last memory format; None: on CUDA only", default=None)
    compile: bool = _help("torch.compile the model", default=False)
    fast_dropout: bool | None = _help("dropout masks from 15 random bits per element (smallunet.cpu_speedups."
                                      "FastDropout); None: on the CPU only", default=None)
    seed: int = _help("seed of the data order, the noise and the initialisation", default=0)
    save_every_minutes: float = _help("minutes between checkpoints", default=10.0)
    log_every: int = _help("steps per point of the loss history", default=25)

    def __post_init__(self):
        self.ch_mult, self.attn_resolutions = tuple(self.ch_mult), tuple(self.attn_resolutions)
        for name in ("in_dim", "in_ch", "ch", "N", "batch_size", "log_every", "decay_steps"):
            check_int(name, getattr(self, name), minimum=1)
        for name in ("num_classes", "warmup_steps", "warmup_start", "seed"):
            check_int(name, getattr(self, name), minimum=0)
        for name in ("lr_total_steps", "decay_start", "max_steps"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=0 if name == "decay_start" else 1)
        for name in ("zero_init", "ema_warmup", "hflip", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("channels_last", "fast_dropout"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True, False or None, got {getattr(self, name)!r}")
        check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        check_float("label_dropout", self.label_dropout, low=0.0, high=1.0)
        check_float("sigma_min", self.sigma_min, low=0.0, low_open=True)
        check_float("sigma_max", self.sigma_max, low=self.sigma_min, low_open=True)
        check_float("sigma_mean", self.sigma_mean, low=-20.0, high=20.0)
        check_float("sigma_std", self.sigma_std, low=0.0, low_open=True, high=20.0)
        check_float("sigma_mix", self.sigma_mix, low=0.0, high=1.0)
        check_float("min_snr_gamma", self.min_snr_gamma, low=0.0, low_open=True)
        check_float("sigma_data", self.sigma_data, low=0.0, low_open=True)
        check_float("lr", self.lr, low=0.0, low_open=True)
        check_float("lr_min_ratio", self.lr_min_ratio, low=0.0, high=1.0)
        check_float("weight_decay", self.weight_decay, low=0.0)
        check_float("ema_decay", self.ema_decay, low=0.0, high=1.0, high_open=True)
        check_float("save_every_minutes", self.save_every_minutes, low=0.0, low_open=True)
        for name, value, allowed in (("sigma_dist", self.sigma_dist, SIGMA_DISTS),
                                     ("loss_weight", self.loss_weight, LOSS_WEIGHTS),
                                     ("lr_schedule", self.lr_schedule, LR_SCHEDULES),
                                     ("precision", self.precision, PRECISIONS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
        if self.epochs is None and self.minutes is None and self.max_steps is None:
            raise ValueError("give a budget: epochs, minutes or max_steps (all are None)")
        if self.epochs is not None:
            check_float("epochs", self.epochs, low=0.0, low_open=True)
        if self.minutes is not None:
            check_float("minutes", self.minutes, low=0.0, low_open=True)

    def model_kwargs(self) -> dict:
        return dict(in_dim=self.in_dim, in_ch=self.in_ch, out_ch=self.in_ch, ch=self.ch,
                    ch_mult=self.ch_mult, attn_resolutions=self.attn_resolutions, dropout=self.dropout)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str, **overrides) -> "TrainConfig":
        d = json.loads(text)
        d = {k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}}
        d.update(overrides)
        return cls(**d)

    def differences(self, other: "TrainConfig", ignore=()) -> dict[str, tuple]:
        """{field: (self's value, other's value)} for every field that differs."""
        a, b = dataclasses.asdict(self), dataclasses.asdict(other)
        return {k: (a[k], b[k]) for k in a if k not in ignore and _norm(a[k]) != _norm(b[k])}


def _norm(v):
    return tuple(v) if isinstance(v, list) else v


# --- what to train, built from the config ----------------------------------------------
def build_model(cfg: TrainConfig) -> Unet:
    """Scaled(Unet) with the configuration's architecture (and label embedding)."""
    kwargs = cfg.model_kwargs()
    if cfg.num_classes:
        temb_ch = cfg.ch * 4                    # Unet's embed_ch_mult=4
        kwargs["cond_embed"] = CondEmbedderLabel(temb_ch, cfg.num_classes, dropout_prob=cfg.label_dropout)
    model = Scaled(Unet)(**kwargs)
    if cfg.zero_init:
        zero_last_convs(model)
    return model


def zero_last_convs(model: nn.Module) -> nn.Module:
    """Zero the last convolution of every ResnetBlock and the output convolution, so
    each block starts as its shortcut (the identity, or a 1x1 projection where the width
    changes) and the model starts by predicting 0 (DDPM's initialisation, which also
    zeroes each attention block's output projection; this does not). The state_dict keys
    and shapes do not change."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ResnetBlock):
                nn.init.zeros_(m.layer2[-1].weight)
                nn.init.zeros_(m.layer2[-1].bias)
        nn.init.zeros_(model.out_layer[-1].weight)
        nn.init.zeros_(model.out_layer[-1].bias)
    return model


def build_schedule(cfg: TrainConfig) -> ScheduleLogLinear:
    """The log-linear schedule of the configuration (training draws from its levels and
    sampling walks down them)."""
    return ScheduleLogLinear(N=cfg.N, sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max)
