"""The core package installs and runs without the book's dependencies: with
matplotlib, scipy and ipywidgets unimportable, it imports, trains a step and samples."""
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("matplotlib", "scipy", "ipywidgets"):
                raise ImportError(f"{name} is blocked for this test")
    sys.meta_path.insert(0, Block())
    import torch
    torch.set_num_threads(1)
    import smallunet
    from smallunet import Trainer, TrainConfig, samples, ScheduleLogLinear, load_pretrained
    from smallunet import cli, distances, protocol  # noqa: F401
    cfg = TrainConfig(in_dim=8, ch=32, ch_mult=(1, 2), attn_resolutions=(4,), N=20, batch_size=4,
                      epochs=None, max_steps=2, sigma_dist="mix", loss_weight="min_snr")
    t = Trainer(cfg, data=torch.rand(8, 1, 8, 8) * 2 - 1, device="cpu", progress=False)
    t.run()
    *_, x0 = samples(t.ema_model(), ScheduleLogLinear(N=20).sample_sigmas(3), batchsize=2)
    assert x0.shape == (2, 1, 8, 8)
    load_pretrained()
    assert not any(m.split(".")[0] in ("matplotlib", "scipy", "ipywidgets") for m in sys.modules)
    print("core ok")
""")


def test_core_runs_without_matplotlib_scipy_ipywidgets():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "core ok" in out.stdout
