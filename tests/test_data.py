"""Loading FashionMNIST offline, the error when it is missing, and the flip augmentation."""
import gzip
import struct

import numpy as np
import pytest
import torch

from smallunet import data
from smallunet.data import (CLASS_NAMES, DEBIAN_DIR, FashionMNISTNotFoundError,
                            load_fashion_mnist, random_hflip, read_idx)

needs_debian = pytest.mark.skipif(not (DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                                  reason="apt-get install dataset-fashion-mnist")


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    """An IDX file of uint8: 0, 0, 0x08, ndim, the sizes as big-endian int32, the bytes."""
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(raw)


def fake_split(folder, prefix: str, n: int, compress: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # make sure both ends of the range occur
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    ext = ".gz" if compress else ""
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images, compress)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels, compress)
    return images, labels


@pytest.fixture
def no_default_dirs(monkeypatch, tmp_path):
    """Hide the Debian folder and the download cache, and unset SMALLUNET_DATA."""
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "no-cache"))
    monkeypatch.delenv("SMALLUNET_DATA", raising=False)


@needs_debian
def test_debian_folder_test_split(monkeypatch):
    monkeypatch.delenv("SMALLUNET_DATA", raising=False)
    x, y = load_fashion_mnist("test", download=False)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (10000,) and y.dtype == torch.int64
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    assert torch.equal(torch.bincount(y), torch.full((10,), 1000))  # 1,000 of each class
    assert y[:5].tolist() == [9, 2, 1, 1, 6]  # the first labels of the published t10k file
    assert len(CLASS_NAMES) == 10 and CLASS_NAMES[9] == "Ankle boot"


@needs_debian
def test_debian_folder_train_split(monkeypatch):
    monkeypatch.delenv("SMALLUNET_DATA", raising=False)
    x, y = load_fashion_mnist("train", download=False)
    assert x.shape == (60000, 1, 28, 28) and y.shape == (60000,)
    assert torch.equal(torch.bincount(y), torch.full((10,), 6000))


@pytest.mark.parametrize("compress", [True, False])
def test_env_var_torchvision_layout(tmp_path, monkeypatch, no_default_dirs, compress):
    images, labels = fake_split(tmp_path / "env" / "FashionMNIST" / "raw", "train", 5, compress)
    monkeypatch.setenv("SMALLUNET_DATA", str(tmp_path / "env"))
    x, y = load_fashion_mnist("train", download=False)
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    torch.testing.assert_close(x[:, 0], torch.from_numpy(images).float() / 127.5 - 1)
    assert y.tolist() == labels.tolist()
    assert x.min().item() == -1.0 and x.max().item() == 1.0


def test_root_comes_first(tmp_path, monkeypatch, no_default_dirs):
    fake_split(tmp_path / "env", "t10k", 3, compress=True)
    fake_split(tmp_path / "root", "t10k", 4, compress=True)  # flat layout
    monkeypatch.setenv("SMALLUNET_DATA", str(tmp_path / "env"))
    x, _ = load_fashion_mnist("test", root=tmp_path / "root", download=False)
    assert len(x) == 4


def test_explicit_root_never_falls_back(tmp_path, monkeypatch, no_default_dirs):
    fake_split(tmp_path / "env", "t10k", 3, compress=True)       # data elsewhere...
    monkeypatch.setenv("SMALLUNET_DATA", str(tmp_path / "env"))
    with pytest.raises(FashionMNISTNotFoundError, match="is not a folder"):
        load_fashion_mnist("test", root=tmp_path / "nothing", download=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FashionMNISTNotFoundError, match="lacks the FashionMNIST 'test' files"):
        load_fashion_mnist("test", root=tmp_path / "empty")         # ...is not used instead


def test_missing_data_error(tmp_path, no_default_dirs, monkeypatch):
    monkeypatch.setenv("SMALLUNET_DATA", str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError) as err:
        load_fashion_mnist("test", download=False)
    assert isinstance(err.value, FashionMNISTNotFoundError)
    message = str(err.value)
    for hint in (str(tmp_path / "nothing"), "no-debian", "no-cache", "apt-get install dataset-fashion-mnist",
                 "SMALLUNET_DATA", "download"):
        assert hint in message


def test_corrupt_files(tmp_path):
    bad_magic = tmp_path / "bad-magic"
    bad_magic.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"\x01\x02\x03")
    with pytest.raises(ValueError, match="magic number 0x803, found 0x801"):
        read_idx(bad_magic, ndim=3)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 10) + b"\x01\x02\x03")
    with pytest.raises(ValueError, match="10 expected|expected, found 11"):
        read_idx(truncated, ndim=1)
    not_gzip = tmp_path / "x.gz"
    not_gzip.write_bytes(b"plain bytes")
    with pytest.raises(ValueError, match="cannot read"):
        read_idx(not_gzip, ndim=1)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"\['test', 'train'\].*'validation'"):
        load_fashion_mnist("validation")
    with pytest.raises(TypeError, match="split must be a str"):
        load_fashion_mnist(0)
    with pytest.raises(TypeError, match="download"):
        load_fashion_mnist("test", download="no")


def test_random_hflip_flips_a_subset():
    x = torch.randn(64, 2, 5, 7)
    out = random_hflip(x, generator=torch.Generator().manual_seed(0))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert torch.all(flipped ^ kept)  # each image is exactly one of the two
    assert 0 < flipped.sum() < 64  # some of each (fails with probability 2 / 2**64)
    again = random_hflip(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # the generator makes it reproducible
    with pytest.raises(ValueError, match="4 dimensions"):
        random_hflip(torch.zeros(3, 28, 28))
    with pytest.raises(TypeError, match="torch.Tensor"):
        random_hflip(np.zeros((1, 1, 2, 2)))


def test_download_failures_mean_not_found_but_bugs_propagate(no_default_dirs, monkeypatch):
    """A failed download (no network: an OSError; every mirror failed: torchvision's
    RuntimeError) means "not found"; any other exception is a bug and is not hidden.
    torchvision is replaced by a stand-in whose FashionMNIST raises."""
    import sys
    import types

    def torchvision_raising(exc):
        def fashion_mnist(*args, **kwargs):
            raise exc
        return types.SimpleNamespace(datasets=types.SimpleNamespace(FashionMNIST=fashion_mnist))

    for exc in (OSError("no network"), RuntimeError("Error downloading train-images-idx3-ubyte.gz")):
        monkeypatch.setitem(sys.modules, "torchvision", torchvision_raising(exc))
        with pytest.raises(FashionMNISTNotFoundError):
            load_fashion_mnist("test")
    monkeypatch.setitem(sys.modules, "torchvision", torchvision_raising(ZeroDivisionError("a bug")))
    with pytest.raises(ZeroDivisionError, match="a bug"):
        load_fashion_mnist("test")
