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

from .checkpoint import read_weights
from .train_config import TrainConfig, build_model
from .unet import Unet

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
PRETRAINED_NAME = "unet_fashion"


def pretrained_info(name: str = PRETRAINED_NAME) -> dict:
    """The manifest of a shipped checkpoint: its SHA-256, how it was trained, its FID."""
    manifest = WEIGHTS_DIR / f"{name}.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"no pretrained checkpoint named {name!r}: {manifest} is missing")
    return json.loads(manifest.read_text())


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "float64": torch.float64}


def load_pretrained(path: str | os.PathLike | None = None, sha256: str | None = None,
                    device: str | torch.device = "cpu", dtype: torch.dtype | str = torch.float32,
                    name: str = PRETRAINED_NAME, weights: str = "ema") -> Unet:
    """A shipped Scaled(Unet) (default the unconditional ``unet_fashion``), in eval mode.

    Args:
        path: a weights file; default the shipped one named ``name``.
        sha256: the expected hash; default the one recorded in the manifest when
            ``path`` is a shipped file. A mismatch raises ValueError.
        device: where to put the model ("cpu", "cuda", ...).
        dtype: its precision: a torch.dtype or one of "float32", "float16", "bfloat16", "float64".
        name: which shipped checkpoint (see ``weights/*.json``).
        weights: "ema" (the averaged weights, for sampling) or "model" (the raw weights of
            the last step: for a shipped checkpoint the ``raw_weights`` file of its
            manifest); a file lacking the asked-for kind is refused.
    """
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be a torch.dtype or one of {', '.join(map(repr, _DTYPES))}, got {dtype!r}")
        dtype = _DTYPES[dtype]
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype such as torch.float32, got {dtype!r}")
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r}: CUDA is not available on this machine; use device='cpu'")
    if path is None:
        info = pretrained_info(name)
        entry = info if weights == "ema" else info.get("raw_weights")
        if entry is None:
            raise ValueError(f"the shipped {name!r} has no raw weights (its manifest has no 'raw_weights'); "
                             f"use weights='ema'")
        path = WEIGHTS_DIR / entry["file"]
        sha256 = sha256 or entry["sha256"]
    if Path(path).is_dir():
        raise ValueError(f"path={str(path)!r} is a directory; give a .safetensors weights file")
    ema, raw, meta = read_weights(path, sha256=sha256)
    if "config" not in meta:
        raise ValueError(f"{path} has no 'config' in its metadata, so the architecture is unknown")
    model = build_model(TrainConfig.from_json(meta["config"]))
    state = ema if weights == "ema" else raw
    if not state:
        held = [kind for kind, sd in (("ema", ema), ("model", raw)) if sd]
        raise ValueError(f"{path} holds no {weights!r} weights ({weights}.*); it holds {held}"
                         + ("; pass weights='model' to load the raw weights" if raw else ""))
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
