"""The distances between two sets of images that the book's metric uses: an FID-like
score and KID, in the feature space of our FashionMNIST classifier.

FID (Heusel et al., 2017) fits a Gaussian to the Inception-v3 features of each set and
reports the Fréchet (2-Wasserstein) distance between the two Gaussians,

    FD = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

We use the same formula on the 128-d penultimate features of ``FashionClassifier``
(``smallunet.classifier``) instead of Inception's 2048-d ones, so the numbers are NOT
comparable with published FIDs: only with each other, at the same sample count. The
estimate is biased upwards for small sets; KID (Bińkowski et al., 2018), the unbiased
squared MMD with the kernel (x.y / D + 1)^3, is not, and is reported beside it.
"""
from __future__ import annotations

import numpy as np
from torch import Tensor

from ._checks import check_int
from .classifier import FashionClassifier, feature_statistics


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    mu1, mu2: (D,) means; sigma1, sigma2: (D, D) covariances (numpy arrays or tensors).
    eps:      kept for pytorch-fid's signature; the eigendecomposition needs no offset.
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(m, dtype=np.float64)) for m in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, dtype=np.float64)) for s in (sigma1, sigma2))
    D = mu1.shape[0]
    if mu1.shape != (D,) or mu2.shape != (D,) or sigma1.shape != (D, D) or sigma2.shape != (D, D):
        raise ValueError(f"expected means of shape (D,) and covariances (D, D) with one D, got "
                         f"mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, sigma2 {sigma2.shape}")
    # tr (S1 S2)^(1/2) = tr (S1^(1/2) S2 S1^(1/2))^(1/2): the inner matrix is symmetric
    # positive semi-definite, so eigh gives its square root stably, with no complex
    # round-off and no singular-matrix warning (a feature with zero variance is fine).
    root1 = _psd_sqrt(sigma1)
    inner = root1 @ sigma2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def kid(feats_a: np.ndarray, feats_b: np.ndarray, subsets: int = 10, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance on features (N, D) and (M, D): the unbiased estimate
    of the squared MMD with the polynomial kernel k(x, y) = (x.y / D + 1)^3, averaged
    over ``subsets`` random subsets of ``min(subset_size, N, M)`` rows of each.
    Returns (mean, standard deviation over the subsets)."""
    feats_a, feats_b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    if feats_a.ndim != 2 or feats_b.ndim != 2 or feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f"expected features (N, D) and (M, D) with one D, got {feats_a.shape} and {feats_b.shape}")
    check_int("subsets", subsets, minimum=1)
    m = min(check_int("subset_size", subset_size, minimum=2), len(feats_a), len(feats_b))
    if m < 2:
        raise ValueError(f"KID needs at least 2 rows in each set, got {len(feats_a)} and {len(feats_b)}")
    d = feats_a.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = feats_a[rng.choice(len(feats_a), m, replace=False)]
        y = feats_b[rng.choice(len(feats_b), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        off = m * (m - 1)
        values.append((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off
                      - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


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
