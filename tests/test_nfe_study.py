"""bench/nfe_study.py's bookkeeping: which points it measures next, what a Heun point
costs, how it keeps an older study, and the summary the targets are stated in."""
import json

from repo_scripts import load_script


def _load():
    return load_script("bench/nfe_study.py")


def _point(mod, sampler, nfe, seed, fid):
    steps, actual = mod.steps_for(sampler, nfe)
    return {mod.key(sampler, nfe, seed): dict(sampler=sampler, nfe_target=nfe, nfe=actual, steps=steps,
                                              seed=seed, fid=fid, minutes=1.0)}


def test_a_heun_step_costs_two_evaluations_and_odd_targets_round_up():
    mod = _load()
    assert mod.steps_for("Heun (EDM)", 5) == (3, 6) and mod.steps_for("Heun (EDM)", 20) == (10, 20)
    assert mod.steps_for("gam 2", 5) == (5, 5)


def test_the_plan_measures_20_10_5_then_seed_1_then_50_then_100_for_the_best_two():
    mod = _load()
    todo = mod.plan({})
    assert todo[0] == ("DDIM (gam 1)", 20, 0) and len(todo) == 4 * 5
    assert [p[1:] for p in todo[12:16]] == [(20, 1)] * 4 and {p[1] for p in todo[16:]} == {50}
    points = {}
    for i, s in enumerate(mod.SAMPLERS):                  # everything but 100 NFE measured
        for nfe, seed in ((20, 0), (10, 0), (5, 0), (20, 1), (50, 0)):
            points.update(_point(mod, s, nfe, seed, 40.0 - i if nfe == 50 else 50.0))
    assert mod.plan(points) == [("Heun (EDM)", 100, 0), ("gam 2", 100, 0)]   # the two best at 50


def test_a_study_of_other_weights_is_kept_beside_the_new_one(tmp_path):
    mod = _load()
    path = tmp_path / "nfe_study.json"
    old = dict(settings=dict(n=1000, precision="bf16", weights_sha256="ab" * 32),
               points=_point(mod, "gam 2", 20, 0, 33.9))
    path.write_text(json.dumps(old))
    new = mod.load(path, dict(n=1000, precision="bf16", weights_sha256="cd" * 32))
    assert new["points"] == {}
    kept = tmp_path / f"nfe_study_{'ab' * 6}_bf16.json"
    assert json.loads(kept.read_text()) == old
    same = mod.load(kept, old["settings"])                # the same settings resume
    assert same["points"] == old["points"]


def test_the_summary_takes_the_best_at_most_20_nfe_and_the_protocols_ratio():
    mod = _load()
    points = {}
    points.update(_point(mod, "gam 1.6 (protocol)", 20, 0, 35.0))
    points.update(_point(mod, "gam 1.6 (protocol)", 20, 1, 37.0))
    points.update(_point(mod, "gam 2", 10, 0, 34.0))
    points.update(_point(mod, "Heun (EDM)", 50, 0, 20.0))    # more than 20 NFE: not a candidate
    got = mod.summary(dict(points=points, floor=dict(fid_mean=2.0)))
    assert got["best_le_20_nfe"] == dict(sampler="gam 2", nfe=10, fid=34.0, ratio=17.0)
    assert got["protocol_20_nfe"] == dict(fid=36.0, ratio=18.0)
