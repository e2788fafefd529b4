"""The protocol: sample quality measured one way everywhere (README, manifests,
chapters, bench), with the distances of ``smallunet.distances``.

The protocol (``evaluate``): reference statistics of all 10,000 test images (computed
once, cached under a name that holds the hash of the classifier and of the images);
n = 1000 samples with a fixed seed, the book's sampler (20 steps, gam=1.6); the floor
is n random training images scored against the same reference, mean and spread over
5 draws: a perfect generator would score about that.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._checks import check_float, check_int
from .classifier import CLASSIFIER_SHA256, FashionClassifier, feature_statistics, features
from .device import bf16_autocast, model_device
from .distances import fid, frechet_distance, kid
from .sampling import samples, samples_heun

PROTOCOL = dict(n=1000, seed=0, steps=20, gam=1.6, mu=0.0, floor_draws=5,
                sigma_min=0.01, sigma_max=20.0, N=800)
SAMPLERS = {                      # name -> (gam, mu), as in smalldiffusion
    "DDPM": (1.0, 0.5),
    "DDIM": (1.0, 0.0),
    "accelerated": (2.0, 0.0),
}


def _tensor_hash(x: Tensor) -> str:
    return hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def reference_features(root=None, cache: bool = True) -> np.ndarray:
    """Features (10000, D) of all FashionMNIST test images with the shipped classifier,
    cached in ``$XDG_CACHE_HOME/smallunet`` under a name holding the SHA-256 of the
    classifier and of the images, so a changed classifier or data set is recomputed."""
    from .data import cache_dir, load_fashion_mnist  # data -> evaluation, never the other way
    x_test, _ = load_fashion_mnist("test", root=root)
    key = hashlib.sha256((CLASSIFIER_SHA256 + _tensor_hash(x_test)).encode()).hexdigest()[:16]
    path = Path(os.environ.get("SMALLUNET_EVAL_CACHE") or cache_dir()) / f"test_features_{key}.npy"
    if cache and path.is_file():
        return np.load(path)
    feats = features(x_test)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, feats)
        os.replace(tmp, path)
    return feats


def reference_statistics(root=None) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of ``reference_features``: the protocol's reference."""
    feats = reference_features(root)
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def fid_floor(n: int, seed: int = 0, classifier: FashionClassifier | None = None,
              root=None) -> float:
    """One draw of the real-versus-real floor: the FID-like score between n random
    training images (drawn with ``seed``) and all 10,000 test images (the protocol's
    reference; with a ``classifier`` other than the shipped one, its own statistics of
    the test images). A generator scored on n samples cannot be expected to go below
    about this. n: 2 <= n <= 60,000."""
    from .data import load_fashion_mnist
    check_int("n", n, minimum=2)
    check_int("seed", seed)
    x_train, _ = load_fashion_mnist("train", root=root)
    if n > len(x_train):
        raise ValueError(f"n must be <= {len(x_train)} (the training split's size), got n={n}")
    if classifier is None:
        ref = reference_statistics(root)
    else:
        ref = feature_statistics(load_fashion_mnist("test", root=root)[0], classifier)
    gen = torch.Generator().manual_seed(seed)
    train = x_train[torch.randperm(len(x_train), generator=gen)[:n]]
    return fid(train, ref, classifier)


def floor(n: int = PROTOCOL["n"], draws: int = PROTOCOL["floor_draws"], root=None) -> dict:
    """The protocol's floor: FID and KID of n training images against the reference,
    as mean and standard deviation over ``draws`` draws (seeds 0, 1, ...)."""
    from .data import load_fashion_mnist
    check_int("n", n, minimum=2)
    check_int("draws", draws, minimum=1)
    x_train, _ = load_fashion_mnist("train", root=root)
    ref_feats = reference_features(root)
    ref = ref_feats.mean(axis=0), np.cov(ref_feats, rowvar=False)
    fids, kids = [], []
    for seed in range(draws):
        gen = torch.Generator().manual_seed(seed)
        f = features(x_train[torch.randperm(len(x_train), generator=gen)[:n]])
        fids.append(frechet_distance(f.mean(0), np.cov(f, rowvar=False), *ref))
        kids.append(kid(f, ref_feats, seed=seed)[0])
    return dict(fid_mean=float(np.mean(fids)), fid_std=float(np.std(fids)),
                kid_mean=float(np.mean(kids)), kid_std=float(np.std(kids)), n=n, draws=draws,
                fids=[round(v, 4) for v in fids])


# --- samples, and scoring them ------------------------------------------------------------
precision_context = bf16_autocast      # (device, bf16): the name the chapters know


@torch.no_grad()
def generate(model: nn.Module, sigmas: torch.Tensor, n: int, gam: float, mu: float, *,
             batch: int = 256, seed: int = 0, bf16: bool = False, progress: bool = False,
             cond: torch.Tensor | None = None, cfg_scale: float = 0.0, heun: bool = False) -> torch.Tensor:
    """``n`` samples (n, C, H, W) on the CPU, in batches of ``batch``; the starting
    noise of sample k depends only on (seed, batch, k), so samplers compared with the
    same seed start from the same noise. ``cond``: (n,) labels for a conditional model.
    ``heun``: sample with ``samples_heun`` (deterministic: gam must be 1 and mu 0)."""
    check_int("n", n, minimum=1)
    if heun and (gam, mu) != (1.0, 0.0):
        raise ValueError(f"heun=True samples deterministically: it needs gam=1 and mu=0, got gam={gam}, mu={mu}")
    check_int("batch", batch, minimum=1)
    check_int("seed", seed, minimum=0)
    if cond is not None and (not isinstance(cond, torch.Tensor) or cond.shape != (n,)):
        raise ValueError(f"cond must be a tensor of n={n} labels, got "
                         f"{tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__}")
    device = model_device(model)
    out = []
    starts = range(0, n, batch)
    for b, start in enumerate(tqdm(starts, desc=f"gam={gam}, mu={mu}, {len(sigmas) - 1} steps",
                                   disable=not progress, leave=False)):
        g = torch.Generator().manual_seed(seed * 1_000_003 + b)
        m = min(batch, n - start)
        kw = {} if cond is None else dict(cond=cond[start:start + m].to(device), cfg_scale=cfg_scale)
        with precision_context(device, bf16):
            if heun:
                *_, x0 = samples_heun(model, sigmas, batchsize=m, generator=g, **kw)
            else:
                *_, x0 = samples(model, sigmas, gam=gam, mu=mu, batchsize=m, generator=g, **kw)
        out.append(x0.float().cpu())
    return torch.cat(out)


def fid_vs_steps(model: nn.Module, schedule, reference_stats, steps: Sequence[int], n: int,
                 samplers: Mapping[str, tuple[float, float]] = SAMPLERS, *, batch: int = 256,
                 seed: int = 0, bf16: bool = False, progress: bool = True) -> dict[str, dict[int, float]]:
    """FID-like score of ``n`` samples for every sampler and number of steps.

    reference_stats: (mu, sigma) from ``feature_statistics`` or ``reference_statistics``.
    Returns {sampler: {steps: fid}}. Samples are clamped to [-1, 1] before scoring."""
    results: dict[str, dict[int, float]] = {}
    jobs = [(name, k) for name in samplers for k in steps]
    for name, k in tqdm(jobs, desc="FID vs steps", disable=not progress):
        gam, mu = samplers[name]
        x = generate(model, schedule.sample_sigmas(k), n, gam, mu, batch=batch, seed=seed, bf16=bf16)
        results.setdefault(name, {})[k] = fid(x.clamp(-1, 1), reference_stats)
    return results


def evaluate(model: nn.Module, n: int = PROTOCOL["n"], seed: int = PROTOCOL["seed"], *,
             steps: int = PROTOCOL["steps"], gam: float = PROTOCOL["gam"], mu: float = PROTOCOL["mu"],
             batch: int = 250, bf16: bool = False, progress: bool = False, root=None) -> dict:
    """The protocol: FID-like score and KID of ``n`` samples (``steps`` steps of the
    log-linear schedule 0.01..20, N=800, with ``gam`` and ``mu``) against all test images.
    Returns a dict with fid, kid, kid_std, n, seed and the sampler's settings."""
    from .schedules import ScheduleLogLinear
    check_int("n", n, minimum=2)
    check_float("gam", gam, low=0.0, low_open=True)
    sigmas = ScheduleLogLinear(sigma_min=PROTOCOL["sigma_min"], sigma_max=PROTOCOL["sigma_max"],
                               N=PROTOCOL["N"]).sample_sigmas(steps)
    x = generate(model, sigmas, n, gam, mu, batch=batch, seed=seed, bf16=bf16, progress=progress)
    f = features(x.clamp(-1, 1))
    ref_feats = reference_features(root)
    score = frechet_distance(f.mean(0), np.cov(f, rowvar=False), ref_feats.mean(0), np.cov(ref_feats, rowvar=False))
    k, k_std = kid(f, ref_feats, seed=seed)
    return dict(fid=float(score), kid=k, kid_std=k_std, n=n, seed=seed, steps=steps, gam=gam, mu=mu)
