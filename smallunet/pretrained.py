"""The pretrained FashionMNIST U-Net that ships with the package.

    model = load_pretrained()        # CPU, eval mode, EMA weights
    sigmas = ScheduleLogLinear(sigma_min=0.01, sigma_max=20, N=800).sample_sigmas(20)
    *_, x0 = samples(model, sigmas, gam=1.6, batchsize=16)

The weights file's SHA-256 is recorded in ``weights/unet_fashion.json`` beside it
and checked on every load, so a tampered or truncated file is refused.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .checkpoint import load_checked, split_prefix
from .recipe import TrainConfig, build_model
from .unet import Unet

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
PRETRAINED_NAME = "unet_fashion"


def pretrained_info(name: str = PRETRAINED_NAME) -> dict:
    """The manifest of a shipped checkpoint: its SHA-256, how it was trained, its FID."""
    manifest = WEIGHTS_DIR / f"{name}.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"no pretrained checkpoint named {name!r}: {manifest} is missing")
    return json.loads(manifest.read_text())


def load_pretrained(path: str | os.PathLike | None = None, sha256: str | None = None,
                    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Unet:
    """The shipped Scaled(Unet) with its EMA weights, in eval mode.

    Args:
        path: a weights file; default the shipped one (``weights/unet_fashion.safetensors``).
        sha256: the expected hash; default the one recorded in the manifest when
            ``path`` is the shipped file. A mismatch raises ValueError.
        device, dtype: where and in which precision to put the model.
    """
    if path is None:
        info = pretrained_info()
        path = WEIGHTS_DIR / info["file"]
        sha256 = sha256 or info["sha256"]
    tensors, meta = load_checked(path, sha256=sha256)
    if "config" not in meta:
        raise ValueError(f"{path} has no 'config' in its metadata, so the architecture is unknown")
    cfg = TrainConfig.from_json(meta["config"])
    model = build_model(cfg)
    weights = split_prefix(tensors, "ema") or split_prefix(tensors, "model")
    if not weights:
        raise ValueError(f"{path} holds no 'ema.*' or 'model.*' weights")
    model.load_state_dict({k: v.to(torch.float32) for k, v in weights.items()}, strict=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
