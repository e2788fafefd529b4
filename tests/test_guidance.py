"""Measuring classifier-free guidance: class accuracy and per-class FID on known inputs,
the recommended scale, nearest neighbours, and a tiny sweep end to end."""
import numpy as np
import pytest
import torch

from smallunet import CondEmbedderLabel, Scaled, Unet
from smallunet.classifier import load_classifier
from smallunet.data import load_fashion_mnist
from smallunet.distances import frechet_distance
from smallunet.guidance import (class_labels, classify, guidance_sweep, nearest_neighbours,
                                recommend_scale, score_classes)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_class_labels_are_balanced_in_every_prefix():
    y = class_labels(3, 4)
    assert y.tolist() == [0, 1, 2, 3] * 3
    assert torch.bincount(y[:8]).tolist() == [2, 2, 2, 2]


def test_classify_agrees_with_the_classifier_and_its_features():
    x, _ = load_fashion_mnist("test")
    clf = load_classifier()
    feats, preds = classify(x[:64], clf)
    with torch.no_grad():
        torch.testing.assert_close(preds, clf(x[:64]).argmax(1))
        np.testing.assert_allclose(feats, clf.features(x[:64]).double().numpy(), rtol=1e-6, atol=1e-6)


def test_score_classes_on_known_features():
    rng = np.random.default_rng(0)
    ref_labels = torch.arange(300) % 3
    ref = rng.standard_normal((300, 4)) + ref_labels.numpy()[:, None]      # class c centred at c
    labels = torch.arange(60) % 3
    feats = rng.standard_normal((60, 4)) + labels.numpy()[:, None]
    preds = labels.clone()
    preds[labels == 2] = torch.tensor([2] * 15 + [0] * 5)                  # class 2: 15 of 20 right
    out = score_classes(feats, preds, labels, ref, ref_labels, num_classes=3)
    assert out["per_class_accuracy"] == [1.0, 1.0, 0.75]
    assert out["accuracy"] == pytest.approx(55 / 60) and out["min_class_accuracy"] == 0.75
    m = (labels == 1).numpy()
    r = (ref_labels == 1).numpy()
    want = frechet_distance(feats[m].mean(0), np.cov(feats[m], rowvar=False), ref[r].mean(0), np.cov(ref[r], rowvar=False))
    assert out["fid_class"][1] == pytest.approx(want)
    want = frechet_distance(feats.mean(0), np.cov(feats, rowvar=False), ref.mean(0), np.cov(ref, rowvar=False))
    assert out["fid"] == pytest.approx(want)                                # pooled: all against all
    with pytest.raises(ValueError, match="same length"):
        score_classes(feats[:10], preds, labels, ref, ref_labels, num_classes=3)


def test_recommend_scale_takes_the_best_fid_among_faithful_scales():
    sweep = {"results": [
        dict(cfg_scale=0.0, accuracy=0.7, min_class_accuracy=0.4, fid=30.0),
        dict(cfg_scale=1.0, accuracy=0.93, min_class_accuracy=0.85, fid=20.0),
        dict(cfg_scale=2.0, accuracy=0.97, min_class_accuracy=0.9, fid=25.0),
        dict(cfg_scale=4.0, accuracy=0.99, min_class_accuracy=0.7, fid=10.0),   # a class below 80 %
    ]}
    assert recommend_scale(sweep) == 1.0
    assert recommend_scale(sweep, accuracy_min=0.95) == 2.0
    assert recommend_scale(sweep, accuracy_min=1.0) is None
    with pytest.raises(ValueError, match="accuracy_min must be in"):
        recommend_scale(sweep, accuracy_min=1.5)


def test_nearest_neighbours_find_copies():
    g = torch.Generator().manual_seed(0)
    pool = torch.rand(50, 1, 6, 6, generator=g)
    images = torch.cat([pool[[7, 21]], torch.rand(3, 1, 6, 6, generator=g)])
    idx, dist = nearest_neighbours(images, pool, batch=2)
    assert idx[:2].tolist() == [7, 21] and dist[:2].max() < 1e-3
    brute = ((images[:, None] - pool[None]).flatten(2).pow(2).mean(-1))   # (5, 50)
    assert idx[2:].tolist() == brute[2:].argmin(1).tolist()
    torch.testing.assert_close(dist[2:], brute[2:].min(1).values.sqrt(), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="one shape"):
        nearest_neighbours(images, torch.rand(4, 1, 5, 5))


def tiny_cond_model():
    torch.manual_seed(0)
    return Scaled(Unet)(28, 1, 1, ch=32, ch_mult=(1,), attn_resolutions=(),
                        cond_embed=CondEmbedderLabel(128, 10)).eval()


def test_guidance_sweep_end_to_end_on_a_tiny_model():
    sweep = guidance_sweep(tiny_cond_model(), scales=[0.0, 2.0], n_per_class=2, steps=2, batch=20)
    assert sweep["scales"] == [0.0, 2.0] and sweep["n_per_class"] == 2
    for r in sweep["results"]:
        assert 0 <= r["accuracy"] <= 1 and len(r["per_class_accuracy"]) == 10
        assert np.isfinite(r["fid"]) and len(r["fid_class"]) == 10


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(scales=[-1.0]), ValueError, r"cfg_scale must be in \[0.0, inf\), got cfg_scale=-1.0"),
    (dict(scales=[]), TypeError, "scales must be a non-empty list"),
    (dict(scales=2.0), TypeError, "scales must be a non-empty list"),
    (dict(scales=[1.0], n_per_class=1), ValueError, "n_per_class must be >= 2"),
])
def test_guidance_sweep_rejects_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        guidance_sweep(tiny_cond_model(), **{"n_per_class": 2, **kwargs})


def test_guidance_sweep_needs_a_conditional_model():
    uncond = Scaled(Unet)(28, 1, 1, ch=32, ch_mult=(1,), attn_resolutions=())
    with pytest.raises(ValueError, match="needs a conditional model"):
        guidance_sweep(uncond, scales=[1.0], n_per_class=2)


def test_within_class_spread():
    a, b = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    images = torch.cat([a, b, a, a])
    labels = torch.tensor([0, 0, 1, 1])
    # class 0: two images at RMS distance 1; class 1: two identical images
    assert guidance_spread(images, labels) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least two images"):
        guidance_spread(images[:2], torch.tensor([0, 1]))


def guidance_spread(images, labels):
    from smallunet.guidance import within_class_spread
    return within_class_spread(images, labels)
