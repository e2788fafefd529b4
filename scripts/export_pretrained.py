"""Ship a training segment: its EMA weights as the pretrained file, its raw weights to
continue from, and one more entry in the manifest's history of segments.

    python scripts/export_pretrained.py runs/seg7.safetensors

The segment's wall time, threads, precision, machine and command come from the record the
trainer keeps in its checkpoint (``smallunet.runrecord``); checkpoints written before it
kept one need --minutes, --threads and --command (and --machine) given by hand.

Writes (in the layout of ``smallunet.checkpoint.write_weights``, fp16):
  smallunet/weights/NAME.safetensors          ema.*   (what load_pretrained(name=NAME) reads)
  smallunet/weights/NAME_raw.safetensors      model.* (the raw weights: load_pretrained(
      weights="model") reads them, and training continues from them with
      python -m smallunet --init-weights smallunet/weights/NAME_raw.safetensors \\
          --init-ema smallunet/weights/NAME.safetensors ...)
and smallunet/weights/NAME.json: the file's SHA-256, the total steps and images seen,
the latest recipe, and ``segments`` (one entry per training segment: steps, batch,
images, minutes, threads, command; the FID at its end is added by
scripts/evaluate_pretrained.py). Metrics of older weights are dropped: they carry
the hash of the weights they scored, which is no longer the shipped file's.
"""
import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from smallunet.checkpoint import read_weights, sha256_of, write_weights  # noqa: E402
from smallunet.pretrained import PRETRAINED_NAME, WEIGHTS_DIR  # noqa: E402
from smallunet.runrecord import RunRecord  # noqa: E402


def migrate(old: dict) -> list[dict]:
    """The first segment, read from a manifest written before segments were recorded."""
    if "step" not in old:
        return []
    found = re.search(r"after ([0-9.]+) min wall", old.get("note", ""))
    threads = re.search(r"--threads ([0-9]+)", old.get("note", ""))
    metrics = old.get("metrics", {})
    return [dict(segment=1, start_step=0, end_step=old["step"], batch_size=old["batch_size"],
                 images=old["images_seen"], images_seen=old["images_seen"], epochs_seen=old["epochs"],
                 minutes=float(found.group(1)) if found else None,
                 threads=int(threads.group(1)) if threads else None, machine="this project's 2-core CPU machine",
                 command=old.get("note", ""), recipe={k: old["config"].get(k) for k in ("lr", "dropout", "ema_decay")},
                 weights_sha256=old["sha256"],
                 fid_end=_fid_end(metrics) if metrics else None)]


def grafted_origin(path: str, weights_dir: Path) -> dict:
    """What a grafted run started from: the shipped checkpoint whose file it read."""
    path = Path(path)
    shipped = weights_dir / path.name
    if shipped.is_file():
        sha = sha256_of(shipped)
        for manifest in sorted(weights_dir.glob("*.json")):
            m = json.loads(manifest.read_text())
            kinds = [(m.get("file"), m.get("sha256")), tuple((m.get("raw_weights") or {}).get(k) for k in ("file", "sha256"))]
            if (path.name, sha) in kinds:      # the file, as the manifest names it (not changed since)
                return {"name": manifest.stem, "file": path.name, "sha256": sha,
                        "step": m["step"], "images_seen": m["images_seen"],
                        "fid": (m.get("metrics") or {}).get("fid")}
    if path.is_file():
        _, _, meta = read_weights(path)
        step = int(meta.get("step", 0))
        return {"file": str(path), "sha256": sha256_of(path), "step": step,
                "images_seen": step * json.loads(meta["config"])["batch_size"]}
    raise SystemExit(f"the run was grafted onto {path}, which is neither a shipped checkpoint nor "
                     f"a file here: cannot record where it started")


def _fid_end(metrics: dict) -> dict:
    if "floor_fid_mean" in metrics:      # scored with protocol.PROTOCOL
        return {"fid": metrics["fid"], "kid": metrics["kid"], "floor": metrics["floor_fid_mean"],
                "protocol": "protocol.PROTOCOL (n=1000 against all 10,000 test images)"}
    return {"fid": metrics["fid"], "floor": metrics.get("floor"),
            "protocol": "n=1000 samples against 1000 test images (before the 10,000-image reference)"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="training checkpoint (or exported weights) at the end of the segment")
    p.add_argument("--name", default=PRETRAINED_NAME, help="the checkpoint's name (default %(default)s)")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock minutes of this segment (default: what the trainer recorded)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: as recorded)")
    p.add_argument("--machine", default=None, help="the machine (default: as recorded)")
    p.add_argument("--command", default=None, help="the command that trained it (default: as recorded)")
    p.add_argument("--note", default=None, help="replace the manifest's note")
    p.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    args = p.parse_args(argv)

    ema, raw, meta = read_weights(args.source)
    if not ema or not raw:
        p.error(f"{args.source} must hold both ema.* and model.* weights")
    cfg = json.loads(meta["config"])
    step = int(meta["step"])
    manifest_path = args.weights_dir / f"{args.name}.json"
    old = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    segments = list(old.get("segments", [])) or migrate(old)
    initialised_from = old.get("initialised_from")
    if not segments and meta.get("grafted_from"):
        # a conditional model started from an unconditional checkpoint: its history
        # begins where that one's ends (the step counter and images seen go on)
        initialised_from = grafted_origin(meta["grafted_from"], args.weights_dir)
    start = segments[-1]["end_step"] if segments else (initialised_from or {}).get("step", 0)
    if step <= start:
        p.error(f"{args.source} is at step {step}, not past the last segment's end ({start})")
    images_before = segments[-1]["images_seen"] if segments else (initialised_from or {}).get("images_seen", 0)
    images = (step - start) * cfg["batch_size"]
    # the trainer's own record of its legs (wall time, threads, machine, command) since `start`
    recorded = RunRecord.from_json(meta.get("run_legs")).summary(start) if meta.get("run_legs") else {}
    how = {k: getattr(args, k) if getattr(args, k) is not None else recorded.get(k)
           for k in ("minutes", "threads", "machine", "command")}
    missing = [k for k, v in how.items() if v is None]
    if missing:
        p.error(f"{args.source} holds no record of its run (trained before the trainer kept one): "
                f"give --{' --'.join(missing)}")
    keep = {"config": meta["config"], "step": str(step), "ema_updates": meta.get("ema_updates", "0"),
            "history": meta.get("history", "[]")}

    out = write_weights(args.weights_dir / f"{args.name}.safetensors", ema, None, keep)
    raw_out = write_weights(args.weights_dir / f"{args.name}_raw.safetensors", None, raw, keep)
    sha = sha256_of(out)
    segments.append(dict(
        segment=len(segments) + 1, start_step=start, end_step=step, batch_size=cfg["batch_size"],
        images=images, images_seen=images_before + images, epochs_seen=round((images_before + images) / 60000, 3),
        **how, **({"precision": recorded["precision"], "legs": recorded["legs"]} if recorded else {}),
        recipe={k: cfg[k] for k in ("lr", "lr_schedule", "warmup_steps", "decay_start", "decay_steps",
                                    "dropout", "sigma_dist", "sigma_mean", "sigma_std", "sigma_mix",
                                    "loss_weight", "min_snr_gamma", "ema_decay") if k in cfg},
        weights_sha256=sha))
    info = {"file": out.name, "sha256": sha, "bytes": out.stat().st_size, "dtype": "float16",
            "weights": "EMA", "step": step, "images_seen": images_before + images,
            "epochs": round((images_before + images) / 60000, 3), "batch_size": cfg["batch_size"],
            "raw_weights": {"file": raw_out.name, "sha256": sha256_of(raw_out), "bytes": raw_out.stat().st_size},
            "config": cfg, "note": args.note or old.get("note", ""), "segments": segments}
    if initialised_from:
        info["initialised_from"] = initialised_from
    for key in ("recommended_cfg_scale",):
        if key in old:
            info[key] = old[key]
    manifest_path.write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps({k: info[k] for k in ("file", "sha256", "step", "images_seen", "epochs")}))


if __name__ == "__main__":
    main()
