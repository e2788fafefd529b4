"""The recipe's options: learning-rate schedules on the global step, noise-level
distributions, loss weights, zero-init, conditioning, and the trainer that uses them
(any ModelMixin through its own loss; resuming with another recipe is refused)."""
import math

import pytest
import torch

from smallunet import CondEmbedderLabel, PredV, Scaled, Unet
from smallunet.checkpoint import load_checked
from smallunet.fast_trainer import Trainer
from smallunet.plain_training import denoiser_loss
from smallunet.train_config import TrainConfig, build_model, zero_last_convs
from smallunet.train_recipe import draw_sigmas, loss_weights, lr_factor

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(in_dim=8, ch=32, ch_mult=(1, 2), attn_resolutions=(4,), N=50, batch_size=8, epochs=None)


def data(n=64, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def make(tmp_path=None, labels=None, init=None, **kw):
    cfg = TrainConfig(**{**TINY, **kw})
    return Trainer(cfg, data=data(), labels=labels, device="cpu", progress=False, init_weights=init,
                   checkpoint=None if tmp_path is None else tmp_path / "ck.safetensors")


# --- learning rate --------------------------------------------------------------------------
def test_warmup_then_cosine_and_linear():
    cos = TrainConfig(**{**TINY, "max_steps": 100}, lr_schedule="cosine", warmup_steps=10, lr_min_ratio=0.1)
    assert lr_factor(cos, 0) == pytest.approx(0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(0))))
    assert lr_factor(cos, 9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.09)))
    assert lr_factor(cos, 50) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(cos, 100) == pytest.approx(0.1) and lr_factor(cos, 500) == pytest.approx(0.1)
    lin = TrainConfig(**TINY, max_steps=100, lr_schedule="linear", lr_total_steps=200)
    assert lr_factor(lin, 50) == pytest.approx(0.75)          # lr_total_steps wins over the budget


def test_wsd_holds_then_decays_from_decay_start():
    hold = TrainConfig(**TINY, max_steps=10, lr_schedule="wsd", warmup_steps=4, warmup_start=100)
    assert [lr_factor(hold, s) for s in (50, 100, 101, 103, 5000)] == pytest.approx([1, .25, .5, 1, 1])
    decay = TrainConfig(**TINY, max_steps=10, lr_schedule="wsd", decay_start=1000, decay_steps=200)
    assert [lr_factor(decay, s) for s in (999, 1000, 1100, 1200, 9999)] == pytest.approx([1, 1, .5, 0, 0])


def test_cosine_without_a_known_end_is_refused():
    cfg = TrainConfig(**{**TINY, "minutes": 5}, lr_schedule="cosine")
    with pytest.raises(ValueError, match="needs lr_total_steps or a budget in epochs or max_steps"):
        lr_factor(cfg, 3)


def test_trainer_sets_the_schedules_rate_and_it_survives_resume(tmp_path):
    t = make(tmp_path, max_steps=6, lr=1e-3, lr_schedule="linear", lr_total_steps=10)
    t.run()
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 - 5 / 10))
    resumed = make(tmp_path, max_steps=8, lr=1e-3, lr_schedule="linear", lr_total_steps=10)
    assert resumed.step == 6
    resumed.run()
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 - 7 / 10))


# --- noise levels and weights ------------------------------------------------------------------
def test_sigma_distributions():
    sig = torch.logspace(-2, math.log10(20), 50)
    g = torch.Generator().manual_seed(0)
    u = draw_sigmas(TrainConfig(**TINY, max_steps=1), sig, 20000, g)
    assert torch.isin(u, sig).all()
    ln = draw_sigmas(TrainConfig(**TINY, max_steps=1, sigma_dist="lognormal", sigma_mean=-0.6, sigma_std=0.5),
                     sig, 20000, g)
    assert ln.min() >= 0.01 and ln.max() <= 20
    assert ln.log().mean().item() == pytest.approx(-0.6, abs=0.02)
    assert ln.log().std().item() == pytest.approx(0.5, abs=0.02)
    mix = draw_sigmas(TrainConfig(**TINY, max_steps=1, sigma_dist="mix", sigma_mix=0.3, sigma_std=0.3),
                      sig, 20000, g)
    on_grid = torch.isin(mix, sig).float().mean().item()       # the schedule's share
    assert on_grid == pytest.approx(0.3, abs=0.02)
    assert (mix == sig[-1]).any()                             # sigma_max is still trained


def test_loss_weights_closed_forms():
    sigma = torch.tensor([0.1, 0.447, 1.0, 20.0])
    assert loss_weights(TrainConfig(**TINY, max_steps=1), sigma) is None
    w = loss_weights(TrainConfig(**TINY, max_steps=1, loss_weight="min_snr", min_snr_gamma=5), sigma)
    # min(SNR, gamma) / SNR with SNR = 1 / sigma^2
    torch.testing.assert_close(w, torch.minimum(1 / sigma ** 2, torch.tensor(5.0)) * sigma ** 2)
    w = loss_weights(TrainConfig(**TINY, max_steps=1, loss_weight="edm", sigma_data=0.5), sigma)
    torch.testing.assert_close(w, (sigma ** 2 + 0.25) / 0.25)


def test_weighted_loss_is_the_weighted_mean_of_per_example_losses():
    torch.manual_seed(0)
    model = Scaled(Unet)(8, 1, 1, ch=32, ch_mult=(1, 2), attn_resolutions=(4,), dropout=0.0).eval()
    x0, eps = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    sigma = torch.tensor([0.1, 1.0, 3.0, 10.0]).reshape(4, 1, 1, 1)
    w = torch.tensor([0.5, 1.0, 2.0, 0.0])
    per_example = torch.stack([((model(x0[i:i + 1] + sigma[i] * eps[i:i + 1], sigma[i]) - eps[i:i + 1]) ** 2).mean()
                               for i in range(4)])
    torch.testing.assert_close(denoiser_loss(model, x0, sigma, eps, weight=w), (w * per_example).mean())
    torch.testing.assert_close(denoiser_loss(model, x0, sigma, eps), model.get_loss(x0, sigma, eps))


# --- initialisation and the models the trainer trains --------------------------------------------
def test_zero_init_keeps_keys_and_starts_at_zero():
    torch.manual_seed(0)
    plain = build_model(TrainConfig(**TINY, max_steps=1))
    zero = build_model(TrainConfig(**TINY, max_steps=1, zero_init=True))
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in zero.state_dict().items()}
    x = torch.randn(2, 1, 8, 8)
    assert torch.count_nonzero(zero.eval()(x, torch.tensor(1.0))) == 0
    assert torch.count_nonzero(plain.eval()(x, torch.tensor(1.0))) > 0
    assert zero.downs[0].blocks[0][0].layer2[-1].weight.abs().sum() == 0
    zero_last_convs(plain)
    assert plain.out_layer[-1].weight.abs().sum() == 0


def test_trainer_trains_a_conditional_model_through_its_loss():
    labels = torch.arange(64) % 3
    t2 = make(labels=labels, max_steps=3, num_classes=3, label_dropout=0.2)
    assert isinstance(t2.model.cond_embed, CondEmbedderLabel)
    before = t2.model.cond_embed.embeddings.weight.clone()
    t2.run()
    assert not torch.equal(before, t2.model.cond_embed.embeddings.weight)   # labels reach the loss
    assert t2.model.cond_embed.dropout_prob == 0.2


def test_denoiser_loss_uses_the_models_own_loss():
    torch.manual_seed(0)
    model = PredV(Scaled(Unet))(8, 1, 1, ch=32, ch_mult=(1, 2), attn_resolutions=(4,), dropout=0.0)
    x0, eps, sigma = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8), torch.full((3, 1, 1, 1), 2.0)
    torch.testing.assert_close(denoiser_loss(model, x0, sigma, eps), model.get_loss(x0, sigma, eps))


# --- resuming --------------------------------------------------------------------------------
def test_resume_with_another_recipe_names_every_difference(tmp_path):
    make(tmp_path, max_steps=2).run()
    with pytest.raises(ValueError, match=r"ch: stored 32, given 64; batch_size: stored 8, given 16"):
        make(tmp_path, max_steps=4, ch=64, batch_size=16)
    make(tmp_path, max_steps=4, lr=1e-4, lr_schedule="wsd", decay_start=3)   # allowed changes


def test_init_weights_reads_a_training_checkpoint(tmp_path):
    first = make(tmp_path, max_steps=3)
    first.run()
    fresh = make(init=tmp_path / "ck.safetensors", max_steps=5)
    assert fresh.step == 3 and int(fresh.ema.n_averaged) == 3
    for k, v in first.ema.module.state_dict().items():
        torch.testing.assert_close(fresh.ema.module.state_dict()[k], v, msg=k)
    for k, v in first.model.state_dict().items():
        torch.testing.assert_close(fresh.model.state_dict()[k], v, msg=k)
    tensors, _ = load_checked(tmp_path / "ck.safetensors")
    assert "rng.0.generator" in tensors and "rng.0.cpu" in tensors      # per-rank random states


@pytest.mark.parametrize("bad, err, match", [
    (dict(hflip="no"), TypeError, "hflip must be True or False, got 'no'"),
    (dict(compile="no"), TypeError, "compile must be True or False, got 'no'"),
    (dict(seed=1.5), TypeError, "seed must be an int, got 1.5"),
    (dict(save_every_minutes=0), ValueError, r"save_every_minutes must be in \(0.0, inf\), got save_every_minutes=0.0"),
    (dict(sigma_dist="edm"), ValueError, "sigma_dist must be one of 'schedule', 'lognormal', 'mix', got 'edm'"),
    (dict(loss_weight="snr"), ValueError, "loss_weight must be one of 'none', 'min_snr', 'edm', got 'snr'"),
    (dict(lr_schedule="step"), ValueError, "lr_schedule must be one of"),
    (dict(sigma_mix=1.5), ValueError, r"sigma_mix must be in \[0.0, 1.0\], got sigma_mix=1.5"),
    (dict(warmup_steps=-1), ValueError, "warmup_steps must be >= 0, got warmup_steps=-1"),
    (dict(num_classes=2.0), TypeError, "num_classes must be an int, got 2.0"),
])
def test_bad_recipe_values(bad, err, match):
    with pytest.raises(err, match=match):
        TrainConfig(**{**TINY, "max_steps": 1, **bad})


@pytest.mark.parametrize("images, err, match", [
    ((data() * 127.5 + 127.5).to(torch.uint8), TypeError, "floating-point tensor in \\[-1, 1\\], got dtype torch.uint8"),
    (data() * 3, ValueError, "data must lie in \\[-1, 1\\]"),
    (torch.where(torch.arange(64).reshape(64, 1, 1, 1) == 5, float("nan"), data()), ValueError, "64 NaN or infinite"),
])
def test_bad_training_data(images, err, match):
    with pytest.raises(err, match=match):
        Trainer(TrainConfig(**TINY, max_steps=1), data=images, device="cpu", progress=False)


def test_bad_labels_and_devices():
    cfg = TrainConfig(**TINY, max_steps=1, num_classes=3)
    with pytest.raises(ValueError, match="pass labels"):
        Trainer(cfg, data=data(), device="cpu")
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\), got values from 0 to 3"):
        Trainer(cfg, data=data(), labels=torch.arange(64) % 4, device="cpu")
    with pytest.raises(ValueError, match="labels must be an integer tensor of shape \\(64,\\)"):
        Trainer(cfg, data=data(), labels=torch.zeros(64), device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda': CUDA is not available"):
            Trainer(TrainConfig(**TINY, max_steps=1), data=data(), device="cuda")


def test_checkpoint_path_that_is_a_directory(tmp_path):
    t = make(max_steps=1)
    with pytest.raises(ValueError, match="is a directory"):
        t.load_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="is a directory"):
        t.load_weights(tmp_path)
