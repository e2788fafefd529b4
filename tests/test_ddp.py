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


def test_ranks_stop_together_when_their_clocks_disagree(tmp_path):
    """The time budget and the checkpoint clock are rank 0's, shared with every rank: a
    rank whose clock runs ahead must not leave the loop (and wait in the checkpoint's
    gather) while the others wait for it in the gradient all-reduce, a hang."""
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(worker), str(tmp_path), "0", "skew"]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the two ranks hung: one left the training loop on its own clock")
    assert done.returncode == 0, done.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0_skew.json").read_text())
    r1 = json.loads((tmp_path / "rank1_skew.json").read_text())
    assert r0["step"] == r1["step"] > 0 and r0["step"] % 10 == 0   # stopped at a shared decision
    assert r0["params"] == r1["params"]


class _Stop(Exception):
    pass


def _fake_two_process_run(monkeypatch, calls, stop_at):
    import torch
    import torch.distributed as dist
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    def init_process_group(backend=None, **kw):
        calls.append(("init", backend))
        if stop_at == "init":
            raise _Stop

    def set_device(d):
        calls.append(("set_device", torch.device(d)))
        if stop_at == "set_device":
            raise _Stop
    monkeypatch.setattr(dist, "init_process_group", init_process_group)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)


def _start_trainer_as_rank_1_of_2(monkeypatch, device, stop_at):
    """What a Trainer on ``device`` did before the faked process group stopped it."""
    import torch
    from smallunet import Trainer, TrainConfig
    calls = []
    _fake_two_process_run(monkeypatch, calls, stop_at=stop_at)
    cfg = TrainConfig(in_dim=8, ch=32, ch_mult=(1,), attn_resolutions=(), N=50, batch_size=8, epochs=None, max_steps=1)
    with pytest.raises(_Stop):
        Trainer(cfg, data=torch.zeros(16, 1, 8, 8), device=device, progress=False)
    return calls


def test_ddp_backend_follows_the_device_not_the_machine(monkeypatch):
    """device='cpu' on a machine with CUDA: gloo (NCCL cannot reduce CPU tensors)."""
    assert _start_trainer_as_rank_1_of_2(monkeypatch, "cpu", stop_at="init") == [("init", "gloo")]


def test_explicit_cuda_device_takes_each_ranks_own_gpu(monkeypatch):
    """device='cuda' under torchrun: rank LOCAL_RANK's GPU (cuda:1 here), not cuda:0 for all."""
    import torch
    calls = _start_trainer_as_rank_1_of_2(monkeypatch, "cuda", stop_at="set_device")
    assert calls == [("init", "nccl"), ("set_device", torch.device("cuda", 1))]
