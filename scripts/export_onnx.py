"""Export the shipped U-Nets to ONNX, for the live sampler that runs them in the reader's
browser (onnxruntime-web), with no kernel and no server.

    python scripts/export_onnx.py                      # both models, into _build/onnx/
    python scripts/export_onnx.py --name unet_fashion --out /tmp/onnx
    python scripts/export_onnx.py --live-config cfg.json   # also what the page needs to know

The book's build runs it (book/_ext/live_sampler.py) and copies the files into the
built book; ``_build/onnx/`` is only its cache (ignored by git, like all of _build).

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
DEFAULT_OUT = ROOT / "_build" / "onnx"


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
    half = out / f"{name}.onnx.tmp"          # renamed into place: a build reading the cache
    onnx.save(weights_to_fp16(onnx.load(str(tmp))), str(half))   # never sees half a file
    tmp.unlink()
    half.replace(path)
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


def live_config(names=NAMES) -> dict:
    """What the live sampler's page needs besides the .onnx files, taken from the package
    on every build (book/_ext/live_sampler.py writes it into the page's script): the
    defaults of the book's sampler (protocol.PROTOCOL), and for each model its file,
    its classes, its recommended guidance scale, and the noise levels of its schedule,
    ``ScheduleLogLinear(N, sigma_min, sigma_max).sigmas`` as float32 (the page picks
    ``sample_sigmas(steps)`` from them with the same index rule as schedules.py)."""
    from smallunet.data import CLASS_NAMES
    from smallunet.protocol import PROTOCOL
    from smallunet.schedules import ScheduleLogLinear

    models = {}
    for name in names:
        info = pretrained_info(name)
        cfg = info["config"]
        schedule = ScheduleLogLinear(N=cfg["N"], sigma_min=cfg["sigma_min"], sigma_max=cfg["sigma_max"])
        num_classes = int(cfg.get("num_classes") or 0)
        models[name] = dict(
            file=f"{name}.onnx", weights_sha256=info["sha256"], step=info.get("step"),
            images_seen=info.get("images_seen"), num_classes=num_classes,
            null_class=num_classes if num_classes else None,        # CondEmbedderLabel's extra row
            class_names=list(CLASS_NAMES) if num_classes else [],
            recommended_cfg_scale=info.get("recommended_cfg_scale") if num_classes else None,
            schedule=f"ScheduleLogLinear(N={cfg['N']}, sigma_min={cfg['sigma_min']:g}, "
                     f"sigma_max={cfg['sigma_max']:g})",
            levels=[float(s) for s in schedule.sigmas.float()])     # float32 values, exact in JSON
    defaults = dict(steps=PROTOCOL["steps"], gam=PROTOCOL["gam"], mu=PROTOCOL["mu"], seed=PROTOCOL["seed"])
    return dict(defaults=defaults, models=models)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", choices=NAMES, action="append", help="which model (default: both)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder (default {DEFAULT_OUT})")
    p.add_argument("--force", action="store_true", help="export even if the files match the weights")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--live-config", type=Path, default=None,
                   help="also write the live sampler's settings (live_config) to this JSON file")
    args = p.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            p.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    for name in args.name or NAMES:
        if not args.force and up_to_date(name, args.out):
            print(f"{name}: up to date in {args.out}")
            continue
        path = export(name, args.out)
        print(f"{name}: wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if args.live_config is not None:
        args.live_config.parent.mkdir(parents=True, exist_ok=True)
        args.live_config.write_text(json.dumps(live_config(args.name or NAMES), indent=1) + "\n")
        print(f"wrote {args.live_config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
