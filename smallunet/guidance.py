"""Classifier-free guidance, measured (chapter Conditioning).

A class-conditional model is asked for a class; two questions decide whether it obeys
and at what price:

* **fidelity to the class**: does the project's classifier (``smallunet.classifier``)
  see the class that was asked for? (``accuracy``, overall and per class)
* **quality and diversity**: the FID-like score of ``smallunet.distances``, pooled
  (all samples against all 10,000 test images: the protocol's number, comparable with
  the unconditional model's at the same n) and per class (the samples of one class
  against the 1,000 test images of that class, beside the floor of real training
  images of that class at the same n).

``guidance_sweep`` measures both against the guidance scale ``cfg_scale`` of
``samples`` (smalldiffusion's convention: eps_c + s (eps_c - eps_u), so s = 0 is the
conditional model without guidance); ``recommend_scale`` picks the scale with the lowest
pooled FID among those that meet the fidelity targets. ``nearest_neighbours`` checks
that samples are not copies of training images.

    model = load_pretrained(name="unet_fashion_cond")
    sweep = guidance_sweep(model, scales=(0, 1, 2, 4), n_per_class=100)
    recommend_scale(sweep)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ._checks import check_float, check_int
from .classifier import classify
from .distances import frechet_distance, kid
from .protocol import PROTOCOL, generate, reference_features
from .schedules import ScheduleLogLinear


def class_labels(n_per_class: int, num_classes: int = 10) -> Tensor:
    """(n_per_class * num_classes,) labels 0, 1, ..., num_classes - 1, 0, 1, ...: every
    prefix of a multiple of num_classes is balanced, so a smaller run is a prefix."""
    check_int("n_per_class", n_per_class, minimum=1)
    check_int("num_classes", num_classes, minimum=1)
    return torch.arange(n_per_class * num_classes) % num_classes


def _stats(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return f.mean(axis=0), np.cov(f, rowvar=False)


def score_classes(feats: np.ndarray, preds: Tensor, labels: Tensor, ref_feats: np.ndarray,
                  ref_labels: Tensor, num_classes: int = 10, seed: int = 0) -> dict:
    """Fidelity and quality of class-conditional samples from their classifier outputs.

    feats, preds: ``classify`` of the samples; labels: the classes asked for (N,);
    ref_feats, ref_labels: the reference (all test images) and their classes.
    Returns accuracy, per_class_accuracy, fid (pooled), kid, kid_std, fid_class (per class),
    fid_class_mean."""
    labels, ref_labels = torch.as_tensor(labels), torch.as_tensor(ref_labels)
    if len(feats) != len(labels) or len(preds) != len(labels):
        raise ValueError(f"feats, preds and labels must have the same length, got "
                         f"{len(feats)}, {len(preds)} and {len(labels)}")
    hit = (preds == labels)
    per_class = [float(hit[labels == c].float().mean()) if (labels == c).any() else float("nan")
                 for c in range(num_classes)]
    fid_class = []
    for c in range(num_classes):
        mine, ref = feats[(labels == c).numpy()], ref_feats[(ref_labels == c).numpy()]
        fid_class.append(frechet_distance(*_stats(mine), *_stats(ref)) if len(mine) >= 2 else float("nan"))
    k, k_std = kid(feats, ref_feats, seed=seed)
    return dict(accuracy=float(hit.float().mean()), per_class_accuracy=per_class,
                min_class_accuracy=float(np.nanmin(per_class)),
                fid=frechet_distance(*_stats(feats), *_stats(ref_feats)), kid=k, kid_std=k_std,
                fid_class=fid_class, fid_class_mean=float(np.nanmean(fid_class)))


def reference(root=None) -> tuple[np.ndarray, Tensor]:
    """Features of all 10,000 test images (the protocol's, cached) and their classes."""
    from .data import load_fashion_mnist
    return reference_features(root), load_fashion_mnist("test", root=root)[1]


def class_floor(n_per_class: int, draws: int = PROTOCOL["floor_draws"], root=None) -> dict:
    """What real images score: ``n_per_class`` training images of every class (drawn with
    seeds 0 .. draws-1) scored like samples (``score_classes``) against the test images.
    Returns the mean and spread over draws of accuracy, min_class_accuracy, fid,
    fid_class_mean, and fid_class (per class, means)."""
    from .data import load_fashion_mnist
    check_int("n_per_class", n_per_class, minimum=2)
    check_int("draws", draws, minimum=1)
    x_train, y_train = load_fashion_mnist("train", root=root)
    ref_feats, ref_labels = reference(root)
    runs = []
    for seed in range(draws):
        g = torch.Generator().manual_seed(seed)
        idx = torch.cat([torch.nonzero(y_train == c).flatten()[torch.randperm(int((y_train == c).sum()), generator=g)[:n_per_class]]
                         for c in range(10)])
        feats, preds = classify(x_train[idx])
        runs.append(score_classes(feats, preds, y_train[idx], ref_feats, ref_labels, seed=seed))
    out = {"n_per_class": n_per_class, "draws": draws}
    for key in ("accuracy", "min_class_accuracy", "fid", "fid_class_mean", "kid"):
        vals = [r[key] for r in runs]
        out[key], out[key + "_std"] = float(np.mean(vals)), float(np.std(vals))
    out["fid_class"] = np.mean([r["fid_class"] for r in runs], axis=0).tolist()
    out["per_class_accuracy"] = np.mean([r["per_class_accuracy"] for r in runs], axis=0).tolist()
    return out


def guidance_sweep(model: nn.Module, scales: Sequence[float], n_per_class: int, *,
                   seed: int = PROTOCOL["seed"], steps: int = PROTOCOL["steps"], gam: float = PROTOCOL["gam"],
                   mu: float = PROTOCOL["mu"], batch: int = 250, bf16: bool = False,
                   progress: bool = False, keep_images: bool = False, root=None) -> dict:
    """``score_classes`` of ``n_per_class`` samples of every class at each guidance scale.

    The samples of every scale start from the same noise (same seed), with the protocol's
    sampler (``steps`` steps of the log-linear schedule 0.01..20, N=800, ``gam``, ``mu``).
    Returns {"scales": [...], "results": [score dict per scale], "n_per_class", "labels",
    settings}; with ``keep_images`` every result also holds its samples ("images", (N, 1, 28, 28)).
    """
    cond_embed = getattr(model, "cond_embed", None)
    if cond_embed is None:
        raise ValueError("guidance_sweep needs a conditional model (its cond_embed is None); "
                         "load one with load_pretrained(name='unet_fashion_cond')")
    if not isinstance(scales, (list, tuple)) or not scales:
        raise TypeError(f"scales must be a non-empty list or tuple of numbers, got {scales!r}")
    scales = [check_float("cfg_scale", s, low=0.0) for s in scales]
    check_int("n_per_class", n_per_class, minimum=2)
    num_classes = cond_embed.num_classes
    labels = class_labels(n_per_class, num_classes)
    sigmas = ScheduleLogLinear(sigma_min=PROTOCOL["sigma_min"], sigma_max=PROTOCOL["sigma_max"],
                               N=PROTOCOL["N"]).sample_sigmas(steps)
    ref_feats, ref_labels = reference(root)
    results = []
    for s in scales:
        x = generate(model, sigmas, len(labels), gam, mu, batch=batch, seed=seed, bf16=bf16,
                     progress=progress, cond=labels, cfg_scale=s)
        feats, preds = classify(x.clamp(-1, 1))
        results.append(dict(cfg_scale=s, **score_classes(feats, preds, labels, ref_feats, ref_labels,
                                                          num_classes, seed=seed)))
        if keep_images:
            results[-1]["images"] = x
    return dict(scales=scales, results=results, n_per_class=n_per_class, num_classes=num_classes,
                labels=labels, seed=seed, steps=steps, gam=gam, mu=mu)


def recommend_scale(sweep: dict, accuracy_min: float = 0.9, class_min: float = 0.8) -> float | None:
    """The guidance scale with the lowest pooled FID among those whose accuracy is at least
    ``accuracy_min`` and whose every class is at least ``class_min``; None if none is."""
    check_float("accuracy_min", accuracy_min, low=0.0, high=1.0, high_open=False)
    check_float("class_min", class_min, low=0.0, high=1.0, high_open=False)
    ok = [r for r in sweep["results"] if r["accuracy"] >= accuracy_min and r["min_class_accuracy"] >= class_min]
    return min(ok, key=lambda r: r["fid"])["cfg_scale"] if ok else None


@torch.no_grad()
def within_class_spread(images: Tensor, labels: Tensor) -> float:
    """The mean RMS pixel distance between two different images of the same class,
    averaged over classes: how varied the samples of a class are (0: all identical)."""
    labels = torch.as_tensor(labels)
    if len(images) != len(labels):
        raise ValueError(f"images and labels must have the same length, got {len(images)} and {len(labels)}")
    per_class = []
    for c in labels.unique():
        x = images[labels == c].flatten(1).float()
        if len(x) < 2:
            continue
        d = torch.cdist(x, x).div(x.shape[1] ** 0.5)                   # (n, n) RMS distances
        per_class.append(d.sum() / (len(x) * (len(x) - 1)))          # the mean off the diagonal
    if not per_class:
        raise ValueError("within_class_spread needs at least two images of some class")
    return float(torch.stack(per_class).mean())


@torch.no_grad()
def nearest_neighbours(images: Tensor, pool: Tensor, batch: int = 256) -> tuple[Tensor, Tensor]:
    """For each image (N, C, H, W), the index in ``pool`` (M, C, H, W) of its nearest image
    and the root-mean-square pixel distance to it: a sample that copies a training
    image is at a distance near 0, far below that of a real test image to the training set."""
    if images.shape[1:] != pool.shape[1:]:
        raise ValueError(f"images and pool must hold images of one shape, got {tuple(images.shape[1:])} "
                         f"and {tuple(pool.shape[1:])}")
    a, b = images.flatten(1).float(), pool.flatten(1).float()
    b2 = b.pow(2).sum(1)                                              # (M,)
    best_d, best_i = [], []
    for i in range(0, len(a), batch):
        q = a[i:i + batch]
        d2 = q.pow(2).sum(1, keepdim=True) - 2 * q @ b.T + b2         # (n, M) squared distances
        d, j = d2.min(1)
        best_d.append(d.clamp_min(0).div(a.shape[1]).sqrt())
        best_i.append(j)
    return torch.cat(best_i), torch.cat(best_d)
