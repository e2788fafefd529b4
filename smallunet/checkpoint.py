"""Checkpoints in safetensors: written atomically, hashed, and read back with
their configuration.

A training checkpoint holds the model's weights (``model.*``), the EMA weights
(``ema.*``), the optimizer state (``optim.*``), the random states (``rng.*``) and,
in the file's metadata, the step, epoch and configuration as JSON.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_atomic(tensors: dict[str, torch.Tensor], path: str | os.PathLike,
                metadata: dict[str, str] | None = None) -> Path:
    """Write a safetensors file through a temporary file in the same folder and
    ``os.replace``, so a crash never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata dictionary of a safetensors file."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_checked(path: str | os.PathLike, sha256: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file, first checking its SHA-256 when one is given.

    Raises FileNotFoundError for a missing file and ValueError for a file whose
    hash differs (tampered with, truncated or replaced) or that is not valid
    safetensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if sha256 is not None:
        found = sha256_of(path)
        if found != sha256:
            raise ValueError(f"{path} has SHA-256 {found}, expected {sha256}: the file was changed, "
                             f"truncated or replaced ({path.stat().st_size} bytes); restore it from the repository")
    try:
        return load_file(str(path)), read_metadata(path)
    except (SafetensorError, OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a valid safetensors file: {err}") from err


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries whose key starts with ``prefix + '.'``, with the prefix removed."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], str]:
    """Flatten an optimizer's state into tensors plus a JSON string of the rest."""
    sd = optimizer.state_dict()
    tensors = {}
    for pid, state in sd["state"].items():
        for name, value in state.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optim.{pid}.{name}"] = t
    return tensors, json.dumps(sd["param_groups"])


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           param_groups_json: str) -> None:
    """Load what optimizer_to_tensors wrote back into ``optimizer``."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in split_prefix(tensors, "optim").items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(param_groups_json)})


WEIGHTS_FORMAT = "smallunet-weights-1"
TRAIN_FORMAT = "smallunet-train-checkpoint-1"


def read_weights(path: str | os.PathLike, sha256: str | None = None
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, str]]:
    """(ema state_dict, model state_dict, metadata) from exported weights or a training
    checkpoint; either state_dict may be empty when the file lacks it. A training
    checkpoint's AveragedModel layout (``ema.module.*``, ``ema.n_averaged``) is
    unwrapped, and its update count goes into the metadata as ``ema_updates``."""
    if Path(path).is_dir():
        raise ValueError(f"{str(path)!r} is a directory; give a .safetensors file")
    tensors, meta = load_checked(path, sha256=sha256)
    meta = dict(meta)
    ema, model = split_prefix(tensors, "ema"), split_prefix(tensors, "model")
    if meta.get("format") == TRAIN_FORMAT:
        if "n_averaged" in ema:
            meta["ema_updates"] = str(int(ema["n_averaged"]))
        ema = split_prefix(ema, "module")
    return ema, model, meta


def write_weights(path: str | os.PathLike, ema: dict[str, torch.Tensor] | None,
                  model: dict[str, torch.Tensor] | None, metadata: dict[str, str],
                  dtype: torch.dtype = torch.float16) -> Path:
    """The one layout of exported weights (``ema.*`` and/or ``model.*`` in ``dtype``,
    format smallunet-weights-1), as Trainer.export_weights and the release script write it."""
    tensors = {f"ema.{k}": v.to(dtype) for k, v in (ema or {}).items()}
    tensors.update({f"model.{k}": v.to(dtype) for k, v in (model or {}).items()})
    if not tensors:
        raise ValueError("nothing to write: give ema or model weights")
    return save_atomic(tensors, path, metadata={**metadata, "format": WEIGHTS_FORMAT})
