"""FastDropout: the trainer's dropout on the CPU (smallunet.cpu_speedups)."""
import pytest
import torch
from torch import nn

from smallunet import Scaled, Unet
from smallunet import Trainer, TrainConfig
from smallunet.cpu_speedups import FastDropout, effective_p, keep_mask, use_fast_dropout


def test_effective_p_is_p_rounded_to_2_to_the_minus_15():
    assert effective_p(0.1) == 3277 / 32768
    assert effective_p(0.0) == 0.0 and effective_p(0.5) == 0.5
    assert effective_p(0.9999999) == 32767 / 32768                      # kept below 1
    with pytest.raises(ValueError, match="p must be in"):
        effective_p(1.0)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.03])
def test_keep_mask_rate_in_both_halves_of_each_draw(p):
    torch.manual_seed(0)
    n = 1_000_001                                                       # odd: the last pair is cut
    keep = keep_mask((n,), p)
    assert keep.dtype == torch.bool and keep.shape == (n,)
    q = 1 - effective_p(p)
    tol = 5 * (q * (1 - q) / (n / 2)) ** 0.5                            # 5 standard errors per half
    assert abs(keep[0::2].float().mean().item() - q) < tol              # the low 16 bits of each draw
    assert abs(keep[1::2].float().mean().item() - q) < tol              # the high 15 bits
    # neighbours come from one draw but are independent: P(both kept) = q^2
    both = (keep[0:-1:2] & keep[1::2]).float().mean().item()
    assert abs(both - q * q) < tol


def test_keep_mask_follows_the_global_seed_and_a_generator():
    torch.manual_seed(3)
    a = keep_mask((4, 5, 6), 0.2)
    torch.manual_seed(3)
    assert torch.equal(a, keep_mask((4, 5, 6), 0.2))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(keep_mask((100,), 0.5, generator=g1), keep_mask((100,), 0.5, generator=g2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_dropout_zeroes_or_scales_each_entry_and_its_gradient(dtype):
    torch.manual_seed(0)
    layer = FastDropout(0.1).train()
    x = torch.randn(64, 32, 7, 7).to(dtype).requires_grad_(True)
    y = layer(x)
    scale = 1 / (1 - effective_p(0.1))
    kept = y != 0
    torch.testing.assert_close(y[kept], (x[kept].float() * scale).to(dtype), rtol=0, atol=0)
    assert 0.88 < kept.float().mean().item() < 0.92
    y.float().sum().backward()
    expected = torch.where(kept, torch.tensor(scale, dtype=dtype), torch.tensor(0.0, dtype=dtype))
    torch.testing.assert_close(x.grad, expected, rtol=0, atol=0)
    # unbiased: the mean of many draws is the input
    x2 = torch.ones(2_000_000)
    assert abs(layer(x2).mean().item() - 1) < 2e-3


def test_fast_dropout_is_nn_dropout_outside_cpu_training():
    layer = FastDropout(0.3).eval()
    x = torch.randn(5, 7)
    assert torch.equal(layer(x), x)
    assert isinstance(layer, nn.Dropout) and layer.extra_repr() == nn.Dropout(0.3).extra_repr()
    layer.train()
    torch.manual_seed(1)
    ref = nn.functional.dropout(x.clone(), 0.3, True, inplace=True)
    torch.manual_seed(1)
    inplace = FastDropout(0.3, inplace=True).train()
    assert torch.equal(inplace(x.clone()), ref)                         # inplace: torch's own path
    assert torch.equal(FastDropout(0.0).train()(x), x)


def test_use_fast_dropout_swaps_every_dropout_and_keeps_the_weights():
    torch.manual_seed(0)
    model = Scaled(Unet)(8, 1, 1, ch=32, ch_mult=(1, 2), attn_resolutions=(4,), dropout=0.1).eval()
    keys = list(model.state_dict())
    x, sigma = torch.randn(2, 1, 8, 8), torch.tensor(1.0)
    before = model(x, sigma)
    n_dropout = sum(type(m) is nn.Dropout for m in model.modules())
    assert use_fast_dropout(model) == n_dropout > 0
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert all(m.p == 0.1 for m in model.modules() if isinstance(m, FastDropout))
    assert list(model.state_dict()) == keys
    torch.testing.assert_close(model(x, sigma), before, rtol=0, atol=0)  # eval mode: unchanged
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        use_fast_dropout("unet")


@pytest.mark.parametrize("fast, expected", [(None, FastDropout), (False, nn.Dropout), (True, FastDropout)])
def test_trainer_uses_fast_dropout_on_the_cpu_by_default(fast, expected):
    cfg = TrainConfig(in_dim=8, ch=32, ch_mult=(1, 2), attn_resolutions=(), batch_size=4, max_steps=1,
                      epochs=None, fast_dropout=fast)
    trainer = Trainer(cfg, data=torch.zeros(8, 1, 8, 8), progress=False)
    kinds = {type(m) for m in trainer.model.modules() if isinstance(m, nn.Dropout)}
    assert kinds == {expected}
    with pytest.raises(TypeError, match="fast_dropout must be True, False or None"):
        TrainConfig(fast_dropout="yes")
