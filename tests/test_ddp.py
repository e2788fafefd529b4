"""Two processes with DistributedDataParallel on the gloo backend (CPU)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smallunet.checkpoint import read_metadata

pytest.importorskip("torch.distributed")


def test_two_process_ddp_run(tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker), str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0_4.json").read_text())
    r1 = json.loads((tmp_path / "rank1_4.json").read_text())
    assert r0["world"] == r1["world"] == 2
    assert r0["local_batch"] == r1["local_batch"] == 4          # the global batch of 8, split
    assert r0["losses"] != r1["losses"]                         # each process saw its own shard ...
    assert r0["params"] == r1["params"]                         # ... and the gradients were averaged
    assert r0["param_sum"] == r1["param_sum"]
    assert read_metadata(tmp_path / "ddp.safetensors")["step"] == "4"   # rank 0 wrote the checkpoint


def test_ddp_resume_restores_every_ranks_own_random_states(tmp_path):
    """Each rank saves and restores its own RNG: a run resumed at step 2 equals one of 4 steps."""
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def torchrun(folder, steps):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(worker), str(folder), str(steps)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    straight.mkdir(), resumed.mkdir()
    torchrun(straight, 4)
    torchrun(resumed, 2)
    torchrun(resumed, 4)
    for rank in (0, 1):
        a = json.loads((straight / f"rank{rank}_4.json").read_text())
        b = json.loads((resumed / f"rank{rank}_4.json").read_text())
        assert a["losses"][2:] == b["losses"], rank          # the same noise after the resume
        assert a["generator_state_sum"] == b["generator_state_sum"]
    r0 = json.loads((resumed / "rank0_4.json").read_text())
    r1 = json.loads((resumed / "rank1_4.json").read_text())
    assert r0["generator_state_sum"] != r1["generator_state_sum"]    # the ranks draw different noise
