"""Modules that moved keep their old paths: each old module re-exports every name it
held (the same objects as the new homes) and warns once, with a DeprecationWarning that
points at the line that imported it."""
import subprocess
import sys
import textwrap

import pytest

import smallunet
from smallunet import (classifier, cpu_speedups, distances, distributed, ema, fast_trainer,
                       plain_training, protocol, train_config, train_data, train_recipe,
                       train_state)
from smallunet.book import anatomy

# old module -> {name: its new home}
MOVED = {
    "smallunet.trainer": {
        "Trainer": fast_trainer, "TrainConfig": train_config, "build_model": train_config,
        "build_schedule": train_config, "ema_multi_avg_fn": ema, "graft_unconditional": train_state,
        "RESUMABLE_CHANGES": train_state, "DECIDE_EVERY": distributed, "check_training_data": train_data,
        "check_labels": train_data, "lr_factor": train_recipe, "draw_sigmas": train_recipe,
        "loss_weights": train_recipe, "denoiser_loss": plain_training, "use_fast_dropout": cpu_speedups,
        "bf16_supported": smallunet.device},
    "smallunet.training": {"training_loop": plain_training, "generate_train_sample": plain_training,
                           "denoiser_loss": plain_training},
    "smallunet.recipe": {"TrainConfig": train_config, "build_model": train_config, "build_schedule": train_config,
                         "zero_last_convs": train_config, "LR_SCHEDULES": train_config,
                         "lr_factor": train_recipe, "draw_sigmas": train_recipe, "loss_weights": train_recipe},
    "smallunet.evaluation": {
        "frechet_distance": distances, "kid": distances, "fid": distances, "classify": classifier,
        "features": classifier, "feature_statistics": classifier, "PROTOCOL": protocol, "SAMPLERS": protocol,
        "reference_features": protocol, "reference_statistics": protocol, "fid_floor": protocol,
        "floor": protocol, "generate": protocol, "fid_vs_steps": protocol, "evaluate": protocol,
        "precision_context": protocol},
    "smallunet.dropout": {"FastDropout": cpu_speedups, "keep_mask": cpu_speedups, "effective_p": cpu_speedups,
                          "use_fast_dropout": cpu_speedups, "BITS": cpu_speedups},
    "smallunet.book.inspect": {name: anatomy for name in (
        "skip_trace", "skip_features", "level_table", "flop_counts", "attention_maps", "attention_spread",
        "skip_ablation", "zero_skip", "push_modules", "pop_modules", "stages", "SkipEvent", "_out_channels")},
}

SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(f"import {sys.argv[1]}")
        exec(f"import {sys.argv[1]}")                           # cached: no second warning
        exec(f"from {sys.argv[1]} import *")
    print(json.dumps([(w.category.__name__, str(w.message), w.filename) for w in caught]))
""")


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_reexports_every_name_and_warns_once(old):
    out = subprocess.run([sys.executable, "-c", SCRIPT, old], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    import json
    caught = [w for w in json.loads(out.stdout) if old in w[1]]
    assert len(caught) == 1, caught
    category, message, filename = caught[0]
    assert category == "DeprecationWarning" and "has moved: import from" in message
    assert filename == "<string>"           # the importing line (here: the -c script), not importlib
    import importlib
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(old)
    for name, home in MOVED[old].items():
        assert getattr(module, name) is getattr(home, name), (old, name)


def test_the_package_itself_imports_no_moved_module():
    out = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c",
                          "import smallunet, smallunet.cli, smallunet.guidance, smallunet.book.anatomy, "
                          "smallunet.book.plotting.sampling, smallunet.book.plotting.attention"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
