"""Long checks, outside the default run: ``python -m pytest -m slow`` (about 5 minutes on
2 CPU cores). The shipped checkpoint's recorded score is reproduced from scratch with the
project's protocol, so the manifest's number is one anyone can re-measure."""
import pytest
import torch

from smallunet import protocol
from smallunet.pretrained import load_pretrained, pretrained_info

pytestmark = pytest.mark.slow


def test_the_shipped_checkpoints_recorded_score_reproduces():
    info = pretrained_info()
    m = info["metrics"]
    assert m["weights_sha256"] == info["sha256"], "the manifest's metrics are for other weights"
    result = protocol.evaluate(load_pretrained(), n=m["n"], seed=m["seed"],
                                 bf16=m["precision"] != "fp32", progress=False)
    # the same weights, noise and sampler: equal up to floating-point summation order
    # across machines and thread counts
    assert result["fid"] == pytest.approx(m["fid"], rel=0.01), (result["fid"], m["fid"])
    assert result["kid"] == pytest.approx(m["kid"], rel=0.05, abs=2.0), (result["kid"], m["kid"])
