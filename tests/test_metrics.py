"""The Fréchet distance against closed forms, the classifier's hash check and accuracy,
and the FID-like score on real and noise images."""
import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from smallunet.checkpoint import sha256_of
from smallunet.classifier import CLASSIFIER_SHA256, WEIGHTS_PATH, FashionClassifier, load_classifier
from smallunet.data import load_fashion_mnist
from smallunet.classifier import feature_statistics
from smallunet.distances import fid, frechet_distance


def random_covariance(rng, d: int) -> np.ndarray:
    a = rng.standard_normal((d, 2 * d))
    return a @ a.T / (2 * d)


def test_frechet_identical_is_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.standard_normal(16), random_covariance(rng, 16)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8


def test_frechet_diagonal_closed_form():
    # For diagonal covariances the square root is elementwise:
    # FD = |mu1 - mu2|^2 + sum_i (s1_i + s2_i - 2 sqrt(s1_i s2_i)).
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8)
    s1, s2 = rng.uniform(0.1, 3, 8), rng.uniform(0.1, 3, 8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-9)
    # Tensors are accepted, and the 1-d case is (mu1 - mu2)^2 + (sd1 - sd2)^2.
    assert frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]),
                            torch.tensor([0.0]), torch.tensor([[1.0]])) == pytest.approx(2.0)


def test_frechet_singular_covariance_is_finite():
    # A feature that never fires has zero variance: the covariances are singular.
    s1, s2 = np.diag([1.0, 2.0, 0.0]), np.diag([2.0, 1.0, 0.0])
    expected = 3 + 3 - 2 * 2 * np.sqrt(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the eps offset is taken instead of scipy's warning
        got = frechet_distance(np.zeros(3), s1, np.zeros(3), s2)
    assert got == pytest.approx(expected, abs=1e-4)


def test_frechet_shape_mismatch():
    with pytest.raises(ValueError, match="mu1 \\(3,\\)"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_shipped_hash_matches_record():
    record = json.loads(WEIGHTS_PATH.with_suffix(".json").read_text())
    assert sha256_of(WEIGHTS_PATH) == CLASSIFIER_SHA256 == record["sha256"]
    assert WEIGHTS_PATH.stat().st_size < 2_000_000


def test_hash_check_catches_tampered_and_truncated(tmp_path):
    good = tmp_path / "good.safetensors"
    shutil.copy(WEIGHTS_PATH, good)
    assert isinstance(load_classifier(good), FashionClassifier)

    tampered = tmp_path / "tampered.safetensors"
    raw = bytearray(good.read_bytes())
    raw[-100] ^= 0xFF  # one weight changes, the file still parses
    tampered.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=f"expected {CLASSIFIER_SHA256}: the file was changed"):
        load_classifier(tampered)

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: len(raw) // 2])
    with pytest.raises(ValueError, match="changed, truncated or replaced"):
        load_classifier(truncated)
    with pytest.raises(ValueError, match="not a valid safetensors file"):  # without the hash, safetensors notices
        load_classifier(truncated, sha256=None)


@pytest.fixture(scope="module")
def test_split():
    try:
        return load_fashion_mnist("test", download=False)
    except FileNotFoundError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


def test_shipped_classifier_accuracy(test_split, classifier):
    x, y = test_split
    with torch.no_grad():
        accuracy = (classifier(x[:2000]).argmax(1) == y[:2000]).float().mean().item()
    assert accuracy >= 0.92


def test_fid_real_small_noise_large(test_split, classifier):
    x, _ = test_split
    real_a, real_b = x[:500], x[500:1000]
    noise = torch.rand(500, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ref = feature_statistics(real_b, classifier)
    real_vs_real = fid(real_a, ref, classifier)
    noise_vs_real = fid(noise, ref, classifier)
    assert 0 < real_vs_real < 0.05 * noise_vs_real


def test_feature_statistics_keeps_mode_and_checks_input(test_split, classifier):
    x, _ = test_split
    classifier.train()
    mu, sigma = feature_statistics(x[:10], classifier)
    assert classifier.training  # restored after the eval-mode pass
    classifier.eval()
    assert mu.shape == (classifier.feat_dim,) and sigma.shape == (classifier.feat_dim,) * 2
    with pytest.raises(ValueError, match="at least 2"):
        feature_statistics(x[:1], classifier)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        feature_statistics((x[:10] + 1) * 127.5, classifier)
    with pytest.raises(ValueError, match="1 channels"):
        feature_statistics(x[:10].repeat(1, 3, 1, 1), classifier)
    # A reference given as images or as its statistics gives the same score.
    assert fid(x[:20], x[20:40], classifier) == pytest.approx(
        fid(x[:20], feature_statistics(x[20:40], classifier), classifier), rel=1e-9)
    with pytest.raises(TypeError, match="reference"):
        fid(x[:10], "test", classifier)


# --- the protocol's pieces: FD against scipy, KID, the cached reference --------------------
def test_frechet_matches_scipy_sqrtm():
    from scipy import linalg
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.standard_normal(20), rng.standard_normal(20)
    s1, s2 = random_covariance(rng, 20), random_covariance(rng, 20)
    expected = (np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
                - 2 * np.trace(linalg.sqrtm(s1 @ s2).real))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_kid_is_unbiased_and_detects_a_shift():
    from smallunet.distances import kid
    rng = np.random.default_rng(0)
    same = [kid(rng.standard_normal((200, 8)), rng.standard_normal((200, 8)), subsets=1, seed=s)[0]
            for s in range(20)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(20) + 1e-3   # mean near 0 (unbiased)
    assert min(same) < 0                                                # so it can go below 0
    a, b = rng.standard_normal((300, 8)) + 0.5, rng.standard_normal((300, 8))
    shifted, spread = kid(a, b, subset_size=100)
    assert shifted > 10 * abs(np.mean(same))
    # the spread is the std over subsets: positive when the subsets differ, (nearly) zero
    # when every subset is the whole set (subset_size >= N: the same rows, permuted)
    assert 0.01 * shifted < spread < shifted
    whole, no_spread = kid(a, b, subset_size=300)
    assert no_spread < 1e-9 * whole
    with pytest.raises(ValueError, match=r"expected features \(N, D\) and \(M, D\)"):
        kid(np.zeros((5, 3)), np.zeros((5, 4)))


def test_reference_features_are_cached_under_the_hash(test_split, tmp_path, monkeypatch):
    from smallunet import protocol
    monkeypatch.setenv("SMALLUNET_EVAL_CACHE", str(tmp_path))
    feats = protocol.reference_features()
    cached = list(tmp_path.glob("test_features_*.npy"))
    assert len(cached) == 1 and feats.shape == (10000, 128)
    np.save(cached[0], feats[:5])                       # the cache is what is read back
    assert protocol.reference_features().shape == (5, 128)
    assert protocol.reference_features(cache=False).shape == (10000, 128)
