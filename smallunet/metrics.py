"""An FID-like score: the Fréchet distance between two image sets in the feature space
of our FashionMNIST classifier.

FID (Heusel et al., 2017) fits a Gaussian to the Inception-v3 features of each set and
reports the Fréchet (2-Wasserstein) distance between the two Gaussians,

    FD = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

We use the same formula on the 128-d penultimate features of ``FashionClassifier``
(``smallunet.classifier``) instead of Inception's 2048-d ones, so the numbers are NOT
comparable with published FIDs: only with each other, at the same sample count. The
estimate is biased upwards for small sets, which is why ``fid_floor`` reports what two
real sets of the same size score against each other: a perfect generator would score
about that.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg
from torch import Tensor

from ._checks import check_image, check_int
from .classifier import FashionClassifier, load_classifier


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    mu1, mu2: (D,) means; sigma1, sigma2: (D, D) covariances (numpy arrays or tensors).
    eps:      added to the diagonals when S1 S2 is too close to singular for a stable
              square root, as in pytorch-fid.
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(m, dtype=np.float64)) for m in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, dtype=np.float64)) for s in (sigma1, sigma2))
    D = mu1.shape[0]
    if mu1.shape != (D,) or mu2.shape != (D,) or sigma1.shape != (D, D) or sigma2.shape != (D, D):
        raise ValueError(f"expected means of shape (D,) and covariances (D, D) with one D, got "
                         f"mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, sigma2 {sigma2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("error", linalg.LinAlgWarning)  # scipy warns when S1 S2 is singular
        try:
            covmean = linalg.sqrtm(sigma1 @ sigma2)
            stable = bool(np.isfinite(covmean).all())
        except linalg.LinAlgWarning:
            stable = False
    if not stable:
        # A singular product (say a feature with zero variance): shift both covariances
        # by eps * I; the result moves by about eps per feature.
        offset = np.eye(D) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        # Rounding can leave tiny imaginary parts; large ones mean the input is not a covariance.
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"the square root of sigma1 @ sigma2 has imaginary parts up to "
                             f"{np.abs(covmean.imag).max():.3g}; expected real (are both covariances "
                             f"symmetric positive semi-definite?)")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


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
def feature_statistics(images: Tensor, classifier: FashionClassifier | None = None,
                       batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D), in float64, of the classifier's penultimate features.

    images:     (N, 1, 28, 28) in [-1, 1], N >= 2, on any device (moved to the classifier's).
    classifier: default the shipped one (``load_classifier()``), on the images' device.
    batch_size: images per forward pass; changes memory use, not the result.
    """
    _check_images("images", images)
    check_int("batch_size", batch_size, minimum=1)
    if classifier is None:
        classifier = _default_classifier(images.device)
    device = next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()  # BatchNorm running statistics, no dropout
    try:
        feats = torch.cat([classifier.features(images[i:i + batch_size].to(device).float()).cpu()
                           for i in range(0, len(images), batch_size)])  # (N, D)
    finally:
        classifier.train(was_training)
    feats = feats.double().numpy()
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def fid(generated: Tensor, reference, classifier: FashionClassifier | None = None,
        batch_size: int = 500) -> float:
    """FID-like score: Fréchet distance between the classifier features of two image sets.

    generated: (N, 1, 28, 28) images in [-1, 1].
    reference: (M, 1, 28, 28) images in [-1, 1], or their ``(mu, sigma)`` from
               ``feature_statistics`` (compute it once when scoring many sets).
    Compare only scores made with the same N: see ``fid_floor``.
    """
    stats_gen = feature_statistics(generated, classifier, batch_size)
    if isinstance(reference, Tensor):
        stats_ref = feature_statistics(reference, classifier, batch_size)
    elif isinstance(reference, (tuple, list)) and len(reference) == 2:
        stats_ref = reference
    else:
        raise TypeError(f"reference must be an image tensor or a (mu, sigma) pair, "
                        f"got {type(reference).__name__}")
    return frechet_distance(*stats_gen, *stats_ref)


def fid_floor(n: int, seed: int = 0, classifier: FashionClassifier | None = None,
              root=None) -> float:
    """The real-versus-real floor: the FID-like score between n random training images
    and n random test images (both drawn with ``seed``). A generator scored on n
    samples cannot be expected to go below about this.

    n: 2 <= n <= 10,000 (the size of the test split). root: as in ``load_fashion_mnist``.
    """
    from .data import load_fashion_mnist  # data -> metrics, never the other way

    check_int("n", n, minimum=2)
    check_int("seed", seed)
    x_train, _ = load_fashion_mnist("train", root=root)
    x_test, _ = load_fashion_mnist("test", root=root)
    if n > len(x_test):
        raise ValueError(f"n must be <= {len(x_test)} (the test split's size), got n={n}")
    gen = torch.Generator().manual_seed(seed)
    train = x_train[torch.randperm(len(x_train), generator=gen)[:n]]
    test = x_test[torch.randperm(len(x_test), generator=gen)[:n]]
    return fid(train, test, classifier)
