"""samples_heun: EDM's deterministic second-order sampler (Karras et al. 2022, Alg. 1).
Checked against the closed-form solution of the probability-flow ODE for Gaussian data
(its error falls as h^2, Euler's as h), against the trapezoid step written out, and
refusing bad input with the same errors as ``samples``."""
import math

import pytest
import torch
from torch import nn

from smallunet import ModelMixin, Scaled, ScheduleLogLinear, Unet, samples, samples_heun

pytestmark = pytest.mark.usefixtures("one_thread")


class GaussEps(nn.Module, ModelMixin):
    """The exact noise predictor for x0 ~ N(0, I): eps(x, sigma) = sigma x / (1 + sigma^2);
    counts its calls."""

    def __init__(self, input_dims=(1, 4, 4)):
        super().__init__()
        self.input_dims, self.calls = input_dims, 0

    def forward(self, x, sigma, cond=None):
        self.calls += 1
        return x * sigma / (1 + sigma ** 2)


def exact(x, sig_from, sig_to):
    """The probability-flow ODE dx/dsigma = sigma x / (1 + sigma^2), solved:
    x(sigma) = x(sigma_from) sqrt((1 + sigma^2) / (1 + sigma_from^2))."""
    return x * math.sqrt((1 + sig_to ** 2) / (1 + sig_from ** 2))


def geometric(n, hi=20.0, lo=0.05):
    return torch.tensor([hi * (lo / hi) ** (i / n) for i in range(n + 1)], dtype=torch.float64)


def final_error(sampler, n):
    x = torch.randn(8, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 20
    *_, got = sampler(GaussEps().double(), geometric(n), xt=x)
    return float((got - exact(x, 20.0, 0.05)).abs().max())


def test_heun_error_falls_as_h_squared_and_euler_as_h():
    heun = [final_error(samples_heun, n) for n in (8, 16, 32, 64)]
    euler = [final_error(samples, n) for n in (8, 16, 32, 64)]     # gam=1, mu=0: Euler (DDIM)
    heun_order = [math.log2(a / b) for a, b in zip(heun, heun[1:])]
    euler_order = [math.log2(a / b) for a, b in zip(euler, euler[1:])]
    assert all(1.8 < p < 2.2 for p in heun_order[1:]), heun_order
    assert all(0.8 < p < 1.2 for p in euler_order[1:]), euler_order
    assert heun[-1] < euler[-1] / 10          # measured: 0.0035 against 0.072 at 64 steps


def test_one_step_is_the_trapezoid_rule_and_a_step_to_zero_is_euler():
    model = GaussEps()
    sigmas = torch.tensor([3.0, 1.0, 0.5, 0.5, 0.0])       # a zero-length step, then one to 0
    x = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    steps = list(samples_heun(model, sigmas, xt=x))
    assert len(steps) == 4 and model.calls == 2 + 2 + 0 + 1   # NFE: 2 per step, none for h=0, 1 at 0
    f = lambda x, s: x * s / (1 + s ** 2)
    ref = x
    for sig, sig_prev, got in zip(sigmas[:-1], sigmas[1:], steps):
        h = sig_prev - sig
        euler = ref + h * f(ref, sig)
        ref = euler if sig_prev == 0 else ref + h * (f(ref, sig) + f(euler, sig_prev)) / 2
        torch.testing.assert_close(got, ref)
    torch.testing.assert_close(steps[2], steps[1])


def test_starts_from_generator_noise_and_samples_in_float32():
    torch.manual_seed(0)
    model = Scaled(Unet)(8, 1, 1, ch=32, ch_mult=(1,), attn_resolutions=()).to(torch.bfloat16)
    sigmas = ScheduleLogLinear(N=50, sigma_min=0.02, sigma_max=10).sample_sigmas(3)
    a = list(samples_heun(model, sigmas, batchsize=2, generator=torch.Generator().manual_seed(5)))
    b = list(samples_heun(model, sigmas, batchsize=2, generator=torch.Generator().manual_seed(5)))
    assert len(a) == 3 and a[-1].dtype == torch.float32 and a[-1].shape == (2, 1, 8, 8)
    torch.testing.assert_close(a[-1], b[-1], rtol=0, atol=0)
    assert not model.training


def _error(fn):
    try:
        fn()
    except (TypeError, ValueError) as err:
        return type(err), str(err)
    return None


@pytest.mark.parametrize("bad", [
    dict(sigmas=torch.tensor([1.0, 2.0, 0.5])),                                 # not decreasing
    dict(sigmas=ScheduleLogLinear(N=10, sigma_min=0.1, sigma_max=10)),         # a schedule, not levels
    dict(generator="cuda"),                                                    # not a CPU generator
    dict(cfg_scale=2.0),                                                       # guidance without labels
    dict(cond=torch.tensor([0, 7]), cond_model=True),                          # a label out of range
    dict(batchsize=0),
    dict(xt=torch.zeros(2, 1, 5, 5)),
])
def test_bad_input_is_refused_with_the_same_error_as_samples(bad):
    from smallunet import CondEmbedderLabel
    bad = dict(bad)
    torch.manual_seed(0)
    cond_embed = CondEmbedderLabel(128, 3) if bad.pop("cond_model", False) else None
    model = Scaled(Unet)(8, 1, 1, ch=32, ch_mult=(1,), attn_resolutions=(), cond_embed=cond_embed)
    args = dict(sigmas=torch.tensor([2.0, 1.0, 0.1]), batchsize=2)
    args.update(bad)
    ours = _error(lambda: samples_heun(model, **args))
    assert ours is not None, "samples_heun accepted bad input"
    assert ours == _error(lambda: samples(model, **args))


def test_convergence_figure_draws_one_line_per_sampler():
    """Chapter 8's figure of error against step size: one line per sampler, the fitted
    slope in its legend, log-log axes; errors of the wrong length are refused."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from smallunet.book.plotting import sampling as sp
    h = [0.4, 0.2, 0.1]
    fig = sp.plot_convergence(h, {"Euler": [4e-1, 2e-1, 1e-1], "Heun": [4e-2, 1e-2, 2.5e-3]},
                              slopes={"Euler": 1.0, "Heun": 2.0})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Euler: slope 1.00", "Heun: slope 2.00"]
    assert ax.get_xscale() == ax.get_yscale() == "log" and len(ax.lines) == 2
    assert fig.get_size_inches()[0] * fig.dpi <= 688
    plt.close(fig)
    with pytest.raises(ValueError, match="one value per h"):
        sp.plot_convergence(h, {"Euler": [1.0, 0.5]})
