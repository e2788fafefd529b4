"""bench/branch_study.py rehearsed tiny: two arms of two steps from the shipped checkpoint,
scored at n = 16, then resumed (nothing is trained or scored twice)."""
import json

import pytest

from repo_scripts import load_script
from smallunet.data import DEBIAN_DIR


def _load():
    return load_script("bench/branch_study.py")


@pytest.mark.skipif(not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(), reason="needs FashionMNIST")
def test_branch_study_trains_scores_and_resumes(tmp_path):
    study_mod = _load()
    res = tmp_path / "b.json"
    two = list(study_mod.ARMS)[:2]
    args = ["--steps", "2", "--decay-steps", "1", "--n", "16", "--out-dir", str(tmp_path / "runs"),
            "--results", str(res), "--arms", *two]
    assert study_mod.main(["--train", "--score", *args]) == 0
    study = json.loads(res.read_text())
    start = study["shipped"]["step"]
    assert list(study["arms"]) == two                      # only the arms trained have a record
    for name, arm in study["arms"].items():
        assert arm["finished"] and arm["steps"] == 2 and arm["step"] == start + 2
        assert arm["decay_start"] == start + 1 and arm["lr_curve"][-1] == [start + 2, 0.0]
        flag = " ".join(study_mod.ARMS[name][1])
        assert all(flag in leg["command"] for leg in arm["legs"])      # the rate, from the run record
    # the shipped model with two seeds; each arm's EMA with two and its raw weights with one
    assert len(study["scores"]) == 2 + 3 * len(two)
    assert study["settings"]["n"] == 16 and study["settings"]["precision"] == "bf16 autocast"
    text = res.with_suffix(".md").read_text()
    assert "Winner by the EMA's score" in text and res.with_suffix(".png").is_file()
    written = {k: v["minutes"] for k, v in study["scores"].items()}
    assert study_mod.main(["--train", "--score", *args]) == 0             # resumes: all done already
    again = json.loads(res.read_text())
    assert {k: v["minutes"] for k, v in again["scores"].items()} == written
    assert all(a["step"] == start + 2 for a in again["arms"].values())


def test_an_arm_with_a_larger_batch_sees_the_same_images_on_the_same_schedule(tmp_path):
    import argparse
    study_mod = _load()
    args = argparse.Namespace(steps=1000, decay_steps=450, minutes=45.0, out_dir=tmp_path, data_root=None)

    def flags(arm):
        cmd = study_mod.train_command(arm, args, 11550)
        assert cmd.count("--batch-size") == 1 and cmd.count("--warmup-steps") == 1
        return {k: int(cmd[cmd.index(k) + 1]) for k in
                ("--batch-size", "--warmup-steps", "--decay-start", "--decay-steps", "--max-steps")}

    small, large = flags("lr 7e-4"), flags("batch 256")
    assert small == {"--batch-size": 128, "--warmup-steps": 200, "--decay-start": 12100,
                     "--decay-steps": 450, "--max-steps": 12550}
    assert large == {"--batch-size": 256, "--warmup-steps": 100, "--decay-start": 11825,
                     "--decay-steps": 225, "--max-steps": 12050}
    from_start = {"--warmup-steps": 0, "--decay-steps": 0, "--decay-start": 11550, "--max-steps": 11550}
    for key, offset in from_start.items():       # in images, every corner of the schedule is the same
        assert (small[key] - offset) * 128 == (large[key] - offset) * 256, key
