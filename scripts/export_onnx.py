"""Export the shipped U-Nets to ONNX, for the live sampler that runs them in the reader's
browser (onnxruntime-web), with no kernel and no server.

    python scripts/export_onnx.py                      # both models, into _static/onnx/
    python scripts/export_onnx.py --name unet_fashion --out /tmp/onnx

Each model becomes one file ``<name>.onnx`` that computes the noise prediction
``predict_eps``:

    unconditional   eps = f(x (B, 1, 28, 28) float32, sigma (1,) float32)
    conditional     eps = f(x, sigma, labels (B,) int64)     labels in 0..9, 10 = the null class

The weights are stored in fp16 (half the download: about 9 MB a model) and cast to fp32
by ``Cast`` nodes when the model loads, so the network computes in fp32 exactly as the
PyTorch model does (up to the fp16 rounding of the weights, which are fp16 on disk
already). A JSON file beside each records the source weights' SHA-256, so a build
re-exports only when the shipped weights changed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from smallunet.pretrained import load_pretrained, pretrained_info  # noqa: E402

NAMES = ("unet_fashion", "unet_fashion_cond")
DEFAULT_OUT = ROOT / "_static" / "onnx"


class EpsOnly(torch.nn.Module):
    """forward(x, sigma[, labels]) -> the model's predict_eps: the graph the browser runs."""

    def __init__(self, model, conditional: bool):
        super().__init__()
        self.model, self.conditional = model, conditional

    def forward(self, x, sigma, labels=None):
        return self.model.predict_eps(x, sigma, cond=labels if self.conditional else None)


def weights_to_fp16(model_proto):
    """Store every float32 initializer as float16 and cast it back to float32 where it is
    used: a file half the size that computes in fp32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model_proto.graph
    casts, kept = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            kept.append(init)
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "_fp16")
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "_to_fp32"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for node in graph.node:         # the exporter's per-node notes (source lines, stack): 1.5 MB
        node.doc_string = ""
        del node.metadata_props[:]
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model_proto)
    return model_proto


def export(name: str, out: Path) -> Path:
    """Write ``out/<name>.onnx`` (and ``<name>.json``) for the shipped checkpoint ``name``."""
    import onnx

    info = pretrained_info(name)
    model = load_pretrained(name=name).float().eval()
    conditional = getattr(model, "cond_embed", None) is not None
    wrapper = EpsOnly(model, conditional).eval()
    x, sigma = torch.randn(2, *model.input_dims), torch.tensor([1.0])
    args = (x, sigma, torch.tensor([0, model.cond_embed.num_classes])) if conditional else (x, sigma)
    batch = torch.export.Dim("B", min=1, max=256)
    shapes = {"x": {0: batch}, "sigma": None, **({"labels": {0: batch}} if conditional else {})}
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.onnx"
    tmp = out / f"{name}.fp32.onnx"
    with torch.no_grad():
        program = torch.onnx.export(wrapper, args, dynamo=True, dynamic_shapes=shapes,
                                    input_names=list(shapes), output_names=["eps"])
    program.save(str(tmp), external_data=False)
    onnx.save(weights_to_fp16(onnx.load(str(tmp))), str(path))
    tmp.unlink()
    meta = dict(name=name, weights_sha256=info["sha256"], conditional=conditional,
                num_classes=model.cond_embed.num_classes if conditional else 0,
                input_dims=list(model.input_dims), images_seen=info.get("images_seen"),
                step=info.get("step"), bytes=path.stat().st_size,
                inputs=list(shapes), output="eps", weights_dtype="float16 (cast to float32 at load)")
    (out / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def up_to_date(name: str, out: Path) -> bool:
    meta = out / f"{name}.json"
    return (out / f"{name}.onnx").is_file() and meta.is_file() and \
        json.loads(meta.read_text()).get("weights_sha256") == pretrained_info(name)["sha256"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", choices=NAMES, action="append", help="which model (default: both)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder (default {DEFAULT_OUT})")
    p.add_argument("--force", action="store_true", help="export even if the files match the weights")
    args = p.parse_args(argv)
    for name in args.name or NAMES:
        if not args.force and up_to_date(name, args.out):
            print(f"{name}: up to date in {args.out}")
            continue
        path = export(name, args.out)
        print(f"{name}: wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
