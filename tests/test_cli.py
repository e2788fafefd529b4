"""The command line: one flag per TrainConfig field, bad values end with argparse's
usage and exit status 2, and a tiny run trains, checkpoints, resumes and exports."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from smallunet.cli import build_parser, parse_args
from smallunet.train_config import TrainConfig


def test_every_config_field_is_a_flag():
    flags = {a.dest for a in build_parser()._actions}
    missing = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in flags]
    assert not missing, missing


def test_flags_parse_into_the_config():
    cfg, args = parse_args(["--ch-mult", "1,2", "--N", "40", "--dropout", "0", "--hflip", "false",
                            "--minutes", "3", "--decay-start", "none", "--sigma-dist", "mix", "--threads", "1"])
    assert cfg.ch_mult == (1, 2) and cfg.N == 40 and cfg.dropout == 0 and cfg.hflip is False
    assert cfg.minutes == 3 and cfg.epochs is None and cfg.decay_start is None and cfg.sigma_dist == "mix"
    assert parse_args([])[0].epochs == 300          # the recipe's budget when none is given


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "epochs must be in (0.0, inf), got epochs=0.0"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
    (["--batch-size", "0"], "batch_size must be >= 1, got batch_size=0"),
    (["--lr", "-1"], "lr must be in (0.0, inf), got lr=-1.0"),
    (["--hflip", "maybe"], "expected true or false, got 'maybe'"),
    (["--sigma-dist", "edm"], "sigma_dist must be one of"),
])
def test_bad_flags_exit_2_with_usage(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        parse_args(argv)
    assert err.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("usage: python -m smallunet") and message in stderr


def fake_fashion(folder, n=40):
    """A tiny FashionMNIST in the idx format (uint8 images and labels)."""
    import gzip
    import struct
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 0x803, n, 28, 28) + rng.integers(0, 256, (n, 28, 28), dtype=np.uint8).tobytes())
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 0x801, n) + (np.arange(n) % 10).astype(np.uint8).tobytes())


def test_tiny_run_resumes_and_exports(tmp_path):
    fake_fashion(tmp_path / "data")
    common = [sys.executable, "-m", "smallunet", "--data-root", str(tmp_path / "data"), "--ch", "32",
              "--ch-mult", "1,2", "--attn-resolutions", "14", "--batch-size", "8", "--N", "20",
              "--threads", "1", "--no-progress", "--checkpoint", str(tmp_path / "ck.safetensors"),
              "--lr-schedule", "wsd", "--warmup-steps", "2", "--sigma-dist", "mix", "--loss-weight", "min_snr"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(common + ["--max-steps", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["total_steps"] == 2
    out = subprocess.run(common + ["--max-steps", "3", "--export", str(tmp_path / "w.safetensors")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["total_steps"] == 3 and summary["steps_this_run"] == 1
    assert (tmp_path / "w.safetensors").is_file()
    # another architecture on the same checkpoint: refused, naming the field
    out = subprocess.run(common + ["--max-steps", "4", "--ch", "64"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode != 0 and "ch: stored 32, given 64" in out.stderr
