"""Turn a training checkpoint (or exported weights) into the shipped pretrained file.

    python scripts/export_pretrained.py runs/cpu_b64.safetensors --note "CPU run, ..."

Writes smallunet/weights/unet_fashion.safetensors (EMA weights, fp16) and records
its SHA-256 and the training facts in smallunet/weights/unet_fashion.json; keeps any
FID already recorded there unless --drop-metrics is given.
"""
import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from smallunet.checkpoint import load_checked, save_atomic, sha256_of, split_prefix  # noqa: E402
from smallunet.pretrained import PRETRAINED_NAME, WEIGHTS_DIR  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("source", help="training checkpoint or exported weights")
    p.add_argument("--note", default="", help="how it was trained (machine, wall time)")
    p.add_argument("--drop-metrics", action="store_true")
    args = p.parse_args()
    tensors, meta = load_checked(args.source)
    ema = split_prefix(tensors, "ema")
    ema = {k[len("module."):]: v for k, v in ema.items() if k.startswith("module.")} or ema
    ema = {k: v for k, v in ema.items() if k != "n_averaged"}
    out = WEIGHTS_DIR / f"{PRETRAINED_NAME}.safetensors"
    cfg = json.loads(meta["config"])
    save_atomic({f"ema.{k}": v.to(torch.float16) for k, v in ema.items()}, out,
                metadata={"config": meta["config"], "step": meta.get("step", "0"),
                          "format": "smallunet-weights-1"})
    manifest_path = WEIGHTS_DIR / f"{PRETRAINED_NAME}.json"
    old = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    info = {"file": out.name, "sha256": sha256_of(out), "bytes": out.stat().st_size,
            "dtype": "float16", "weights": "EMA", "step": int(meta.get("step", 0)),
            "batch_size": cfg["batch_size"], "lr": cfg["lr"], "ema_decay": cfg["ema_decay"],
            "images_seen": int(meta.get("step", 0)) * cfg["batch_size"],
            "epochs": round(int(meta.get("step", 0)) * cfg["batch_size"] / 60000, 3),
            "config": cfg, "note": args.note or old.get("note", "")}
    if not args.drop_metrics and "metrics" in old:
        info["metrics"] = old["metrics"]
    manifest_path.write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps({k: info[k] for k in ("file", "sha256", "bytes", "step", "epochs")}))


if __name__ == "__main__":
    main()
