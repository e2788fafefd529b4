"""FashionMNIST as two tensors, and the one augmentation the book uses.

The whole split fits in memory (60,000 images of 28x28 are 188 MB as float32),
so training keeps it on the device as one tensor and draws batches by indexing,
with no ``DataLoader`` in between.

Where the files are looked for: a ``root`` argument, when given, is used alone (a
folder that lacks the files raises, with no fallback). Otherwise, in order:

1. the folder in the environment variable ``SMALLUNET_DATA``;
2. ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``);
3. the download cache, ``$XDG_CACHE_HOME/smallunet`` (``~/.cache/smallunet`` by default).

In each folder the four IDX files may lie flat (``train-images-idx3-ubyte.gz``)
or in torchvision's layout (``FashionMNIST/raw/train-images-idx3-ubyte``),
gzip'd or not. When none is found, torchvision downloads them into the cache.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ._checks import check_tensor

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLITS = {"train": "train", "test": "t10k"}  # split -> file name prefix
_UBYTE = 0x08  # the IDX type code for unsigned bytes


class FashionMNISTNotFoundError(FileNotFoundError):
    """The FashionMNIST files are neither on disk nor downloadable."""


def cache_dir() -> Path:
    """The folder that torchvision downloads into: ``$XDG_CACHE_HOME/smallunet``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "smallunet"


def _candidate_dirs(root) -> list[Path]:
    dirs = []
    if root is not None:
        dirs.append(Path(root).expanduser())
    if os.environ.get("SMALLUNET_DATA"):
        dirs.append(Path(os.environ["SMALLUNET_DATA"]).expanduser())
    dirs += [DEBIAN_DIR, cache_dir()]
    return dirs


def _find_file(folder: Path, name: str) -> Path | None:
    """``name`` (e.g. ``train-images-idx3-ubyte``) flat or in torchvision's layout."""
    for sub in (folder, folder / "FashionMNIST" / "raw"):
        for candidate in (sub / (name + ".gz"), sub / name):
            if candidate.is_file():
                return candidate
    return None


def _find_split(folder: Path, prefix: str) -> tuple[Path, Path] | None:
    images = _find_file(folder, f"{prefix}-images-idx3-ubyte")
    labels = _find_file(folder, f"{prefix}-labels-idx1-ubyte")
    return (images, labels) if images is not None and labels is not None else None


def read_idx(path: str | os.PathLike, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes with ``ndim`` dimensions (gzip'd if it ends in .gz).

    The header is two zero bytes, the type code (0x08 for uint8), the number of
    dimensions, then each size as a big-endian int32; the bytes follow.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:  # a bad gzip stream, a truncated archive
        raise ValueError(f"cannot read IDX file {path}: {err}") from err
    magic = 0x0800 + ndim
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        shown = "nothing (file shorter than 4 bytes)" if found is None else hex(found)
        raise ValueError(f"{path} is not an IDX file of {ndim}-d uint8: expected magic number "
                         f"{hex(magic)}, found {shown}")
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise ValueError(f"{path} is corrupt: its header gives shape {shape}, so {expected} bytes "
                         f"expected, found {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _download(split: str) -> tuple[Path, Path] | None:
    """Let torchvision fetch the files into the cache; None when that fails."""
    try:
        import torchvision
        torchvision.datasets.FashionMNIST(root=str(cache_dir()), train=(split == "train"),
                                          download=True)
    # what "not here" looks like: no torchvision (ImportError), no network or a proxy
    # (urllib's URLError is an OSError), every mirror failed (torchvision's RuntimeError);
    # anything else is a bug and propagates
    except (ImportError, OSError, RuntimeError) as err:
        print(f"smallunet: downloading FashionMNIST failed: {err}")
        return None
    return _find_split(cache_dir(), SPLITS[split])


def load_fashion_mnist(split: str = "train", root: str | os.PathLike | None = None,
                       download: bool | None = None, device=None) -> tuple[Tensor, Tensor]:
    """The whole FashionMNIST ``split`` as ``(images, labels)``.

    split:    "train" (60,000 images) or "test" (10,000).
    root:     the folder to read, used alone (default: the folders of the module docstring).
    download: None or True downloads with torchvision when nothing is on disk;
              False never touches the network.
    device:   where the tensors go (default the CPU).

    Returns images float32 (N, 1, 28, 28) in [-1, 1] and labels int64 (N,).
    """
    if not isinstance(split, str):
        raise TypeError(f"split must be a str, got {type(split).__name__}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got split={split!r}")
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a str, a path or None, got {type(root).__name__}")
    if download is not None and not isinstance(download, bool):
        raise TypeError(f"download must be True, False or None, got {download!r}")

    if root is not None:   # an explicit folder is used alone: no silent fallback
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise FashionMNISTNotFoundError(f"root={str(root)!r} is not a folder (it does not exist "
                                            f"or is a file); give the folder holding the FashionMNIST files")
        files = _find_split(folder, SPLITS[split])
        if files is None:
            raise FashionMNISTNotFoundError(
                f"root={str(root)!r} lacks the FashionMNIST {split!r} files "
                f"({SPLITS[split]}-images-idx3-ubyte[.gz] and {SPLITS[split]}-labels-idx1-ubyte[.gz], "
                f"flat or under FashionMNIST/raw/); leave root=None to search SMALLUNET_DATA, "
                f"{DEBIAN_DIR} and {cache_dir()}")
        tried = [folder]
    else:
        tried = _candidate_dirs(root)
        files = next((f for f in (_find_split(d, SPLITS[split]) for d in tried) if f), None)
    if files is None and download is not False:
        files = _download(split)
    if files is None:
        folders = "\n".join(f"  {d}" for d in tried)
        raise FashionMNISTNotFoundError(
            f"FashionMNIST {split!r} files ({SPLITS[split]}-images-idx3-ubyte[.gz] and "
            f"{SPLITS[split]}-labels-idx1-ubyte[.gz]) not found in:\n{folders}\n"
            f"To get them: `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or set "
            f"SMALLUNET_DATA=/path/to/folder holding the files, or run with internet access "
            f"and download=True so torchvision downloads them into {cache_dir()}."
            + ("" if download is not False else " (download=False was given.)"))

    images = read_idx(files[0], ndim=3)  # (N, 28, 28) uint8
    labels = read_idx(files[1], ndim=1)  # (N,) uint8
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(f"{files[0]} and {files[1]} do not match: expected images (N, 28, 28) "
                         f"and N labels, found images {images.shape} and {len(labels)} labels")
    # Move the bytes first and convert on the device: a quarter of the traffic.
    x = torch.from_numpy(images.copy()).to(device).unsqueeze(1)  # (N, 28, 28) -> (N, 1, 28, 28)
    x = x.float() / 127.5 - 1.0  # [0, 255] -> [-1, 1]
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    return x, y


def random_hflip(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Flip a random half (each image with probability 1/2) of a batch left to right.

    x: (B, C, H, W) on any device; generator: an optional ``torch.Generator``
    (on the CPU or on x's device) for reproducible flips. Returns a new tensor.
    """
    check_tensor("x", x)
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, C, H, W) (4 dimensions), got shape {tuple(x.shape)}")
    gen_device = generator.device if generator is not None else x.device
    flip = torch.rand(x.shape[0], generator=generator, device=gen_device) < 0.5  # (B,)
    flip = flip.to(x.device).view(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1), broadcast over C, H, W
    return torch.where(flip, x.flip(-1), x)
