"""The fast trainer: exact resume, EMA with warmup, budgets, checkpoints, export."""
import json

import pytest
import torch

from smallunet.checkpoint import load_checked, read_metadata, sha256_of
from smallunet.pretrained import load_pretrained
from smallunet import Trainer, TrainConfig
from smallunet.ema import ema_multi_avg_fn

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one thread is faster

TINY = dict(in_dim=8, ch=32, ch_mult=(1, 2), attn_resolutions=(4,), N=50, batch_size=8, epochs=None)


def data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g) * 2 - 1


def trainer(tmp_path=None, name="ck.safetensors", data_=None, **kw):
    cfg = TrainConfig(**{**TINY, **kw})
    ck = None if tmp_path is None else tmp_path / name
    return Trainer(cfg, data=data() if data_ is None else data_, device="cpu", checkpoint=ck, progress=False)


def state(t):
    return {**{f"m.{k}": v for k, v in t.model.state_dict().items()},
            **{f"e.{k}": v for k, v in t.ema.state_dict().items()}}


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    # log_every=2: the loss history has points on both sides of the interruption (with the
    # default 25 both histories of 12 steps would be empty and their comparison vacuous)
    straight = trainer(max_steps=12, log_every=2)
    straight.run()
    first = trainer(tmp_path, max_steps=5, log_every=2)    # stops after 5 steps, mid-epoch (8 steps per epoch)
    first.run()
    resumed = trainer(tmp_path, max_steps=12, log_every=2)  # same checkpoint: picks up at step 5
    assert resumed.step == 5
    resumed.run()
    assert resumed.step == straight.step == 12
    a, b = state(straight), state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert [s for s, _ in straight.history] == [2, 4, 6, 8, 10, 12]
    assert [s for s, _ in resumed.history] == [2, 4, 6, 8, 10, 12]
    # after the cut (step 5) the windows of steps 7-8, 9-10 and 11-12 saw the same batches,
    # noise and weights, so the same losses; step 6's window holds only step 6 after a resume
    assert resumed.history[3:] == straight.history[3:]


def test_training_lowers_the_loss():
    t = trainer(max_steps=1, lr=2e-3, dropout=0.0)
    x0 = data(8)
    torch.manual_seed(0)
    g_state = t.generator.get_state()
    before = float(t.train_step(x0))
    for _ in range(30):
        t.generator.set_state(g_state)           # the same sigma and noise every time
        after = float(t.train_step(x0))
    assert after < 0.7 * before, (before, after)


def test_ema_warmup_follows_the_formula():
    decay, warm = 0.999, ema_multi_avg_fn(0.999, True)
    ema, p = [torch.zeros(3)], [torch.ones(3)]
    for n in range(1, 6):
        old = ema[0].clone()
        warm(ema, p, torch.tensor(n))
        d = min(decay, (1 + n) / (10 + n))
        torch.testing.assert_close(ema[0], d * old + (1 - d) * p[0])
    fixed = ema_multi_avg_fn(decay, False)
    ema = [torch.zeros(3)]
    fixed(ema, p, torch.tensor(1))
    torch.testing.assert_close(ema[0], torch.full((3,), 1 - decay))


def test_first_ema_update_copies_the_model():
    t = trainer(max_steps=1)
    t.run()
    ema = t.ema.module.state_dict()
    # after one update the EMA holds the weights of step 1 exactly (n_averaged was 0)
    assert int(t.ema.n_averaged) == 1
    for k, v in t.model.state_dict().items():
        torch.testing.assert_close(ema[k], v)


def test_budget_in_epochs_and_steps():
    t = trainer(epochs=2)               # 64 images, batch 8 -> 8 steps per epoch
    t.run()
    assert t.step == 16
    t = trainer(epochs=0.5)
    t.run()
    assert t.step == 4


def test_checkpoint_is_safetensors_with_config(tmp_path):
    t = trainer(tmp_path, max_steps=3)
    t.run()
    meta = read_metadata(tmp_path / "ck.safetensors")
    assert meta["step"] == "3"
    assert json.loads(meta["config"])["batch_size"] == 8
    tensors, _ = load_checked(tmp_path / "ck.safetensors")
    assert any(k.startswith("optim.") for k in tensors) and any(k.startswith("ema.") for k in tensors)
    assert not list(tmp_path.glob("*.tmp"))     # the atomic write left no temporary file


def test_exported_weights_load_as_pretrained(tmp_path):
    t = trainer(max_steps=2)
    t.run()
    path = tmp_path / "w.safetensors"
    t.export_weights(path, dtype=torch.float32)
    model = load_pretrained(path, sha256=sha256_of(path))
    assert not model.training
    x, sigma = torch.randn(2, 1, 8, 8), torch.tensor(1.0)
    with torch.no_grad():
        torch.testing.assert_close(model(x, sigma), t.ema_model()(x, sigma))
    # a fresh trainer can continue from the exported weights (fresh optimizer)
    cfg = TrainConfig(**{**TINY, "max_steps": 3})
    cont = Trainer(cfg, data=data(), device="cpu", init_weights=path, progress=False)
    assert cont.step == 2
    cont.run()
    assert cont.step == 3


@pytest.mark.parametrize("bad, match", [
    (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(lr=-1.0), "lr must be in"),
    (dict(precision="fp8"), "precision must be one of 'auto', 'bf16', 'fp16', 'fp32', got 'fp8'"),
    (dict(epochs=None, max_steps=None), "give a budget"),
    (dict(ema_decay=1.0), "ema_decay must be in"),
])
def test_bad_config(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{**TINY, "max_steps": 1, **bad})


def test_bad_data():
    with pytest.raises(ValueError, match=r"data must have shape \(N, 1, 8, 8\), got \(64, 1, 9, 9\)"):
        trainer(data_=torch.zeros(64, 1, 9, 9), max_steps=1)
    with pytest.raises(ValueError, match="batch_size=8 is larger than the data set"):
        trainer(data_=data(4), max_steps=1)
    with pytest.raises(TypeError, match="cfg must be a TrainConfig"):
        Trainer({"batch_size": 8}, data=data())


def test_conditional_run_grafted_onto_unconditional_weights(tmp_path):
    """A conditional recipe started from an unconditional model's weights starts as exactly
    that model, for every label, then learns what the labels add; resuming keeps the graft's
    provenance, and weights of another architecture are refused."""
    uncond = trainer(max_steps=2)
    uncond.run()
    path = tmp_path / "u.safetensors"
    uncond.export_weights(path, dtype=torch.float32)
    labels = torch.arange(64) % 3
    cfg = TrainConfig(**{**TINY, "max_steps": 6, "num_classes": 3, "lr": 2e-3})
    cond = Trainer(cfg, data=data(), labels=labels, device="cpu", init_weights=path,
                   checkpoint=tmp_path / "c.safetensors", progress=False)
    assert cond.grafted_from == str(path) and cond.step == 2
    assert int(cond.ema.n_averaged) == 1            # the EMA's warm-up restarts
    x, sigma = torch.randn(4, 1, 8, 8), torch.tensor(1.0)
    with torch.no_grad():
        want = uncond.ema_model()(x, sigma)
        for y in range(4):                           # 3 classes and the null class
            got = cond.ema_model()(x, sigma, cond=torch.full((4,), y))
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    cond.run()
    with torch.no_grad():
        m = cond.ema_model()
        outs = [m(x, sigma, cond=torch.full((4,), y)) for y in range(3)]
    assert (outs[0] - outs[1]).abs().max() > 0       # the labels now change the prediction
    cond.export_weights(tmp_path / "c_w.safetensors", dtype=torch.float32)
    assert read_metadata(tmp_path / "c_w.safetensors")["grafted_from"] == str(path)
    resumed = Trainer(TrainConfig(**{**TINY, "max_steps": 7, "num_classes": 3, "lr": 2e-3}), data=data(),
                      labels=labels, device="cpu", checkpoint=tmp_path / "c.safetensors", progress=False)
    assert resumed.grafted_from == str(path) and resumed.step == 6
    wider = TrainConfig(**{**TINY, "ch": 64, "max_steps": 1})
    with pytest.raises(ValueError, match="do not fit this recipe's model"):
        Trainer(wider, data=data(), device="cpu", init_weights=path, progress=False)
    wider_cond = TrainConfig(**{**TINY, "ch": 64, "max_steps": 1, "num_classes": 3})
    with pytest.raises(ValueError, match="graft_unconditional: the weights do not fit this model's Unet"):
        Trainer(wider_cond, data=data(), labels=labels, device="cpu", init_weights=path, progress=False)


def test_trainer_without_data_loads_fashion_mnist_and_its_labels_only_when_conditional():
    """Trainer(TrainConfig(...)) with no data, as the module docstring shows: it loads
    FashionMNIST's training images, and its labels only for a conditional recipe (an
    unconditional recipe refused the labels it had loaded itself)."""
    from smallunet.data import FashionMNISTNotFoundError, load_fashion_mnist
    try:
        load_fashion_mnist("test", download=False)
    except FashionMNISTNotFoundError:
        pytest.skip("FashionMNIST is not on this machine")
    small = dict(ch=32, ch_mult=(1,), attn_resolutions=(), N=50, batch_size=8, max_steps=1)
    plain = Trainer(TrainConfig(**small), device="cpu", progress=False)
    assert tuple(plain.data.shape) == (60000, 1, 28, 28) and plain.labels is None
    cond = Trainer(TrainConfig(**small, num_classes=10), device="cpu", progress=False)
    assert tuple(cond.labels.shape) == (60000,) and int(cond.labels.max()) == 9


def test_fp16_trains_with_gradient_scaling_and_resumes_exactly(tmp_path):
    """precision='fp16': autocast to float16 with a GradScaler (on the CPU here; a T4 on
    Colab takes the same path); its loss scale is saved and restored on resume."""
    straight = trainer(max_steps=6, precision="fp16", dropout=0.0)
    assert straight.scaler.is_enabled()
    losses = [float(s.loss) for s in straight.steps()]
    assert all(torch.isfinite(torch.tensor(losses)))
    first = trainer(tmp_path, max_steps=3, precision="fp16", dropout=0.0)
    first.run()
    first.scaler.update(123.0)                      # a scale the resumed run must read back
    first.save_checkpoint(tmp_path / "ck.safetensors")
    resumed = trainer(tmp_path, max_steps=6, precision="fp16", dropout=0.0)
    assert resumed.step == 3 and resumed.scaler.get_scale() == 123.0
    bf = trainer(max_steps=1, precision="bf16")
    assert not bf.scaler.is_enabled()               # bf16 has fp32's range: no scaling


def test_auto_precision_picks_fp16_on_a_gpu_without_bf16(monkeypatch):
    """auto: bf16 where it is native (compute capability >= 8.0), fp16 on older GPUs
    (Colab's T4 is 7.5), fp32 on a CPU without bf16 and on MPS."""
    from smallunet import device as dev
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, expected in (((7, 5), "fp16"), ((7, 0), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, c=capability: c)
        assert dev.auto_precision("cuda") == expected, capability
    assert dev.auto_precision("mps") == "fp32"
    monkeypatch.setattr(dev, "_cpu_flags", lambda: {"avx512f"})          # AVX-512 without BF16
    assert dev.auto_precision("cpu") == "fp32"
    monkeypatch.setattr(dev, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert dev.auto_precision("cpu") == ("bf16" if torch.backends.mkldnn.is_available() else "fp32")


def test_autocast_helper_is_off_without_calling_torch_autocast(monkeypatch):
    """fp32 is a null context, never torch.autocast(..., enabled=False), which raises on
    MPS with torch < 2.5; an unknown precision is refused."""
    from smallunet.device import autocast

    def refuse(*args, **kwargs):
        raise AssertionError("torch.autocast called for fp32")
    monkeypatch.setattr(torch, "autocast", refuse)
    with autocast("mps", "fp32"):
        pass
    with pytest.raises(ValueError, match="precision must be one of 'bf16', 'fp16', 'fp32', got 'fp8'"):
        autocast("cpu", "fp8")
