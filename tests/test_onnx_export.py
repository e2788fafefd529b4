"""The ONNX export behind the live sampler (scripts/export_onnx.py): each shipped U-Net,
run by onnxruntime, computes what the PyTorch model computes, on fixed inputs at several
noise levels (and labels, the null class included), with its weights stored in fp16."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from smallunet.pretrained import load_pretrained, pretrained_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("export_onnx", ROOT / "scripts" / "export_onnx.py")
export_onnx = importlib.util.module_from_spec(spec)
sys.modules["export_onnx"] = export_onnx
spec.loader.exec_module(export_onnx)

SIGMAS = (0.02, 0.3, 2.0, 20.0)
# eps = (x - x0_hat) / sigma multiplies the network's float rounding by 1/sigma (50 at
# 0.02): measured at most 3e-4 against |eps| up to 4; 1e-3 leaves room across machines
ATOL = 1e-3


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    torch.set_num_threads(1)
    return {name: export_onnx.export(name, out) for name in export_onnx.NAMES}


@pytest.mark.parametrize("name", export_onnx.NAMES)
def test_onnx_model_matches_pytorch(exported, name):
    path = exported[name]
    model = load_pretrained(name=name).float().eval()
    conditional = name.endswith("cond")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 9, 10])          # two classes and the null class
    for sigma in SIGMAS:
        xs = x * sigma
        feed = {"x": xs.numpy(), "sigma": np.array([sigma], np.float32)}
        if conditional:
            feed["labels"] = labels.numpy()
        got = torch.from_numpy(sess.run(None, feed)[0])
        with torch.no_grad():
            want = model.predict_eps(xs, torch.tensor(sigma), cond=labels if conditional else None)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0, msg=f"{name} at sigma={sigma}")
    if conditional:                             # the label matters (it is not a constant input)
        other = dict(feed, labels=np.array([5, 5, 5]))
        assert np.abs(sess.run(None, other)[0] - sess.run(None, feed)[0]).max() > 1e-2


@pytest.mark.parametrize("name", export_onnx.NAMES)
def test_weights_are_fp16_and_the_batch_is_dynamic(exported, name):
    m = onnx.load(str(exported[name]))
    floats = [i for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims)]
    halves = sum(int(np.prod(i.dims)) for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16)
    n_params = sum(p.numel() for p in load_pretrained(name=name).parameters())
    # every weight in fp16 (plus 73 constants the exporter folded: 4,424,906 against 4,424,833)
    assert not floats and n_params <= halves < n_params + 1000
    assert exported[name].stat().st_size < 1.1 * 2 * n_params     # about the fp16 weights alone
    sess = ort.InferenceSession(str(exported[name]), providers=["CPUExecutionProvider"])
    feed = {"x": np.zeros((5, 1, 28, 28), np.float32), "sigma": np.array([1.0], np.float32)}
    if name.endswith("cond"):
        feed["labels"] = np.zeros(5, np.int64)
    assert sess.run(None, feed)[0].shape == (5, 1, 28, 28)
    meta = export_onnx.json.loads(exported[name].with_suffix(".json").read_text())
    assert meta["weights_sha256"] == pretrained_info(name)["sha256"]
    assert export_onnx.up_to_date(name, exported[name].parent)
