"""A small CNN that classifies FashionMNIST, used as the feature extractor of our metric.

FID compares generated and real images in the feature space of an Inception network
trained on ImageNet. For 28x28 grey clothes we use a network trained on the clothes
themselves: ``FashionClassifier.features`` gives its 128-d penultimate layer (and
``features``, ``feature_statistics`` and ``classify`` those of a whole image set), and
``smallunet.distances`` measures Fréchet distances there.

The weights ship with the package (``smallunet/weights/fashion_classifier.safetensors``,
made by ``scripts/train_classifier.py``); ``load_classifier`` checks their SHA-256 so
that a number computed with a damaged or swapped file cannot pass for ours.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ._checks import check_image, check_int
from .checkpoint import load_checked

WEIGHTS_PATH = Path(__file__).parent / "weights" / "fashion_classifier.safetensors"
# The SHA-256 of the shipped file, as printed by scripts/train_classifier.py.
CLASSIFIER_SHA256 = "e0b3367e5ee35732d9b39c992ccc294d689d734c15c9238a12a1bc3702216ffd"


def conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 convolution that keeps H, W; no bias, since BatchNorm subtracts the mean anyway."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class FashionClassifier(nn.Module):
    """Two stages of two 3x3 convolutions, each stage ending in a 2x2 max-pool, then
    a fully connected layer to ``feat_dim`` features and a linear layer to 10 logits.

    ch:       channels of the first stage (the second has ``2 * ch``).
    feat_dim: size of the penultimate features that the metric uses.
    dropout:  dropout on the features, active in training only.
    """

    def __init__(self, ch: int = 32, feat_dim: int = 128, dropout: float = 0.3):
        super().__init__()
        check_int("ch", ch, minimum=1)
        check_int("feat_dim", feat_dim, minimum=1)
        self.ch, self.feat_dim = ch, feat_dim
        self.body = nn.Sequential(
            conv_bn_relu(1, ch), conv_bn_relu(ch, ch), nn.MaxPool2d(2),              # 28 -> 14
            conv_bn_relu(ch, 2 * ch), conv_bn_relu(2 * ch, 2 * ch), nn.MaxPool2d(2),  # 14 -> 7
        )
        self.fc = nn.Linear(2 * ch * 7 * 7, feat_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feat_dim, 10)

    def features(self, x: Tensor) -> Tensor:
        """x: (B, 1, 28, 28) images in [-1, 1] -> (B, feat_dim) penultimate features.

        These are the fully connected layer's outputs before its ReLU: after it, 33 of the
        128 units are 0 for every test image, and their covariance would be singular.
        """
        check_image("x", x, channels=1, size=28)
        h = self.body(x)               # (B, 1, 28, 28) -> (B, 2ch, 7, 7)
        return self.fc(h.flatten(1))  # (B, 2ch * 49) -> (B, feat_dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, 1, 28, 28) images in [-1, 1] -> (B, 10) logits, in CLASS_NAMES order."""
        return self.features_and_logits(x)[1]

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (B, 1, 28, 28) -> (features (B, feat_dim), logits (B, 10)) from one pass."""
        f = self.features(x)
        return f, self.head(self.dropout(torch.relu(f)))


def load_classifier(path: str | os.PathLike | None = None, device=None,
                    sha256: str | None = CLASSIFIER_SHA256) -> FashionClassifier:
    """The trained classifier, in eval mode, on ``device`` (default the CPU).

    path:   a safetensors file; default the weights shipped in the package.
    sha256: the hash the file must have; default the shipped file's. Pass None to
            skip the check (for weights you trained yourself).
    """
    path = Path(WEIGHTS_PATH if path is None else path)
    if not path.is_file():
        raise FileNotFoundError(f"classifier weights not found at {path}; make them with "
                                f"`python scripts/train_classifier.py`")
    state, meta = load_checked(path, sha256=sha256.lower() if sha256 is not None else None)
    model = FashionClassifier(ch=int(meta.get("ch", 32)), feat_dim=int(meta.get("feat_dim", 128)))
    # The file may hold fp16 weights; the model computes in fp32.
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.to(device).eval()


# --- the features of an image set, as the metric reads them --------------------------------
def _check_images(name: str, images) -> Tensor:
    check_image(name, images, channels=1, size=28)
    if images.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 images for a covariance, got {images.shape[0]}")
    lo, hi = images.min().item(), images.max().item()
    if not (-1.5 <= lo and hi <= 1.5):  # a little slack for unclamped samples
        raise ValueError(f"{name} must hold images scaled to [-1, 1], got values in [{lo:.3g}, {hi:.3g}]"
                         f" (for [0, 255] bytes use x / 127.5 - 1)")
    return images


_DEFAULT: dict[str, FashionClassifier] = {}  # the shipped classifier, loaded once per device


def _default_classifier(device) -> FashionClassifier:
    key = str(device)
    if key not in _DEFAULT:
        _DEFAULT[key] = load_classifier(device=device)
    return _DEFAULT[key]


@torch.no_grad()
def classify(images: Tensor, classifier: FashionClassifier | None = None,
             batch_size: int = 500) -> tuple[np.ndarray, Tensor]:
    """The classifier's penultimate features (N, D), float64, and predicted classes (N,)
    of images (N, 1, 28, 28) in [-1, 1] on any device (moved to the classifier's), from
    one forward pass per batch."""
    _check_images("images", images)
    check_int("batch_size", batch_size, minimum=1)
    if classifier is None:
        classifier = _default_classifier(images.device)
    device = next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()  # BatchNorm running statistics, no dropout
    feats, preds = [], []
    try:
        for i in range(0, len(images), batch_size):
            f, logits = classifier.features_and_logits(images[i:i + batch_size].to(device).float())
            feats.append(f.cpu())                       # (b, D)
            preds.append(logits.argmax(1).cpu())        # (b,)
    finally:
        classifier.train(was_training)
    return torch.cat(feats).double().numpy(), torch.cat(preds)


def features(images: Tensor, classifier: FashionClassifier | None = None,
             batch_size: int = 500) -> np.ndarray:
    """The classifier's penultimate features (N, D), float64, of images (N, 1, 28, 28)
    in [-1, 1] on any device (moved to the classifier's)."""
    return classify(images, classifier, batch_size)[0]


def feature_statistics(images: Tensor, classifier: FashionClassifier | None = None,
                       batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D), in float64, of the classifier's penultimate features.

    images:     (N, 1, 28, 28) in [-1, 1], N >= 2, on any device (moved to the classifier's).
    classifier: default the shipped one (``load_classifier()``), on the images' device.
    batch_size: images per forward pass; changes memory use, not the result.
    """
    feats = features(images, classifier, batch_size)
    return feats.mean(axis=0), np.cov(feats, rowvar=False)
