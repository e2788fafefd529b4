"""scripts/fid_table.py --precision-study on a tiny case: it writes the JSON and the
table chapter 8 reads, the full set and its halves for fp32 and bf16 from the same
noise, with the floors at n and n/2, and continues a study instead of redoing it."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args, timeout=600):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_precision_study_tiny_run(tmp_path):
    out = tmp_path / "study.json"
    args = (ROOT / "scripts" / "fid_table.py", "--precision-study", "--n", "8", "--seeds", "0",
            "--threads", "1", "--study-out", out)
    done = run(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    study = json.loads(out.read_text())
    from smallunet.pretrained import pretrained_info
    assert study["settings"]["weights_sha256"] == pretrained_info()["sha256"]
    assert study["settings"]["n"] == 8 and study["settings"]["gam"] == 1.6
    assert set(study["runs"]) == {"fp32 seed 0", "bf16 seed 0"}
    for r in study["runs"].values():
        assert all(r[k] > 0 for k in ("fid", "fid_first_half", "fid_second_half"))
    assert 0 < study["runs"]["bf16 seed 0"]["rms_to_fp32"] < 0.5      # same noise, other precision
    assert set(study["floor"]) == {"8", "4"}
    text = out.with_suffix(".md").read_text()
    assert "| fp32, seed 0 |" in text and "| bf16, seed 0 |" in text and "floor" in text
    again = run(*args)                                 # a finished study is not measured again
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("already measured") == 2
    assert json.loads(out.read_text())["runs"] == study["runs"]
