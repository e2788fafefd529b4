"""The noise schedules against smalldiffusion's tensors and against independent closed
forms (diffusers' DDPMScheduler alphas_cumprod, float64 numpy); sample_sigmas against
smalldiffusion's and diffusers' "trailing" timesteps; sample_batch."""
import math

import numpy as np
import pytest
import smalldiffusion as sd
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from smallunet import (Schedule, ScheduleCosine, ScheduleDDPM, ScheduleLDM, ScheduleLogLinear,
                       ScheduleSigmoid, sigmas_from_betas)

pytestmark = pytest.mark.usefixtures("one_thread")

SCHEDULES = [  # ours, smalldiffusion's, keyword arguments
    pytest.param(ScheduleLogLinear, sd.ScheduleLogLinear, dict(N=800, sigma_min=0.01, sigma_max=20),
                 id="loglinear-800"),
    pytest.param(ScheduleLogLinear, sd.ScheduleLogLinear, dict(N=7), id="loglinear-7"),
    pytest.param(ScheduleDDPM, sd.ScheduleDDPM, dict(), id="ddpm"),
    pytest.param(ScheduleDDPM, sd.ScheduleDDPM, dict(N=50, beta_start=1e-3, beta_end=0.05), id="ddpm-50"),
    pytest.param(ScheduleLDM, sd.ScheduleLDM, dict(), id="ldm"),
    pytest.param(ScheduleSigmoid, sd.ScheduleSigmoid, dict(), id="sigmoid"),
    pytest.param(ScheduleCosine, sd.ScheduleCosine, dict(), id="cosine"),
    pytest.param(ScheduleCosine, sd.ScheduleCosine, dict(N=10), id="cosine-10"),
]


@pytest.mark.parametrize("ours, theirs, kw", SCHEDULES)
def test_schedule_equals_smalldiffusion(ours, theirs, kw):
    a, b = ours(**kw), theirs(**kw)
    assert a.sigmas.dtype == b.sigmas.dtype == torch.float32
    assert len(a) == len(b) == kw.get("N", 1000)
    torch.testing.assert_close(a.sigmas, b.sigmas, rtol=0, atol=0)
    assert bool((a.sigmas[1:] > a.sigmas[:-1]).all())          # increasing
    assert isinstance(a, Schedule) and a[3] == a.sigmas[3]


def sigma_from_alpha_bar(alpha_bar) -> torch.Tensor:
    """sigma_t = sqrt(1 / alpha_bar_t - 1): the noise level of x_t / sqrt(alpha_bar_t)."""
    return torch.sqrt(1 / torch.as_tensor(alpha_bar) - 1)


@pytest.mark.parametrize("ours, diffusers_kw", [
    (ScheduleDDPM(), dict(beta_schedule="linear")),
    (ScheduleDDPM(N=200, beta_start=1e-3, beta_end=0.03), dict(num_train_timesteps=200, beta_start=1e-3,
                                                               beta_end=0.03, beta_schedule="linear")),
    (ScheduleLDM(), dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)),
    (ScheduleSigmoid(), dict(beta_schedule="sigmoid")),
    (ScheduleCosine(), dict(beta_schedule="squaredcos_cap_v2")),
], ids=["ddpm", "ddpm-200", "ldm", "sigmoid", "cosine"])
def test_schedule_matches_diffusers(ours, diffusers_kw):
    alpha_bar = DDPMScheduler(**diffusers_kw).alphas_cumprod
    torch.testing.assert_close(ours.sigmas, sigma_from_alpha_bar(alpha_bar), rtol=1e-5, atol=0)


def float64_alpha_bar(betas: np.ndarray) -> np.ndarray:
    return np.cumprod(1 - betas)


@pytest.mark.parametrize("ours, betas", [
    (ScheduleDDPM(), np.linspace(1e-4, 0.02, 1000)),
    (ScheduleLDM(), np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2),
    (ScheduleSigmoid(), 1 / (1 + np.exp(-np.linspace(-6, 6, 1000))) * (0.02 - 1e-4) + 1e-4),
], ids=["ddpm", "ldm", "sigmoid"])
def test_schedule_closed_form_float64(ours, betas):
    """alpha(sigma) = 1 / (1 + sigma^2) is DDPM's alpha_bar = prod(1 - beta), computed
    here in float64 (float32's cumulative product drifts by about 1e-5)."""
    torch.testing.assert_close(1 / (1 + ours.sigmas.double() ** 2),
                               torch.from_numpy(float64_alpha_bar(betas)), rtol=1e-4, atol=1e-6)


def test_cosine_closed_form():
    """Nichol and Dhariwal: alpha_bar_t = f(t) / f(0), f(t) = cos^2((t/N + 0.008) / 1.008 * pi/2),
    as long as no beta is clipped at 0.999 (all but the last few)."""
    N = 1000
    f = lambda t: np.cos((t / N + 0.008) / 1.008 * np.pi / 2) ** 2   # noqa: E731
    alpha_bar = f(np.arange(1, N + 1)) / f(0)
    sigmas = ScheduleCosine(N).sigmas.double().numpy()
    np.testing.assert_allclose(1 / (1 + sigmas[:990] ** 2), alpha_bar[:990], rtol=1e-4, atol=1e-6)
    assert sigmas[-1] > 1e4          # the last alpha_bar is tiny (clipped betas)


def test_loglinear_closed_form():
    s = ScheduleLogLinear(N=800, sigma_min=0.01, sigma_max=20)
    ref = 0.01 * (20 / 0.01) ** (np.arange(800) / 799)     # evenly spaced in log(sigma)
    np.testing.assert_allclose(s.sigmas.numpy(), ref, rtol=1e-5)
    assert s[0].item() == pytest.approx(0.01) and s[-1].item() == pytest.approx(20)
    ratios = s.sigmas[1:] / s.sigmas[:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, (20 / 0.01) ** (1 / 799)))


def test_sigmas_from_betas():
    betas = torch.tensor([0.1, 0.2, 0.5])
    alpha_bar = torch.tensor([0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.5])
    torch.testing.assert_close(sigmas_from_betas(betas), torch.sqrt(1 / alpha_bar - 1))


# --- sample_sigmas ---------------------------------------------------------------------------

@pytest.mark.parametrize("N", [10, 800, 1000])
@pytest.mark.parametrize("steps", [1, 2, 3, 6, 10])
def test_sample_sigmas_equals_smalldiffusion(N, steps):
    kw = dict(N=N, sigma_min=0.01, sigma_max=20)
    ours, theirs = ScheduleLogLinear(**kw), sd.ScheduleLogLinear(**kw)
    s = ours.sample_sigmas(steps)
    torch.testing.assert_close(s, theirs.sample_sigmas(steps), rtol=0, atol=0)
    assert s.shape == (steps + 1,)
    assert s[0] == ours.sigmas[-1] and s[-1] == ours.sigmas[0]      # from the largest to the smallest
    assert bool((s[1:] <= s[:-1]).all())                             # decreasing,
    if steps <= 2 * N / 3:                                           # strictly unless the last
        assert bool((s[1:] < s[:-1]).all())                          # index rounds to 0 too


@pytest.mark.parametrize("steps", [7, 20, 50, 100, 333, 1000])
def test_sample_sigmas_trailing_like_diffusers(steps):
    """The first `steps` levels sit at diffusers' "trailing" timesteps (Lin et al. 2023,
    table 2: round(N, N - N/steps, ...) - 1); the last is the smallest level."""
    schedule = ScheduleDDPM()
    ddim = DDIMScheduler(timestep_spacing="trailing")
    ddim.set_timesteps(steps)
    s = schedule.sample_sigmas(steps)
    torch.testing.assert_close(s[:-1], schedule.sigmas[ddim.timesteps], rtol=0, atol=0)
    assert s[-1] == schedule.sigmas[0]
    torch.testing.assert_close(s, sd.ScheduleDDPM().sample_sigmas(steps), rtol=0, atol=0)


def test_sample_sigmas_with_as_many_steps_as_levels():
    """With steps > 2N/3 the last index rounds to 0 too: the sequence ends with two copies
    of sigma_min (a step of length zero), exactly as in smalldiffusion."""
    s = ScheduleLogLinear(N=10).sample_sigmas(10)
    torch.testing.assert_close(s, sd.ScheduleLogLinear(N=10).sample_sigmas(10), rtol=0, atol=0)
    assert len(s) == 11 and s[-1] == s[-2] and bool((s[1:-1] < s[:-2]).all())


# --- sample_batch ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sample_batch(dtype):
    schedule = ScheduleLogLinear(N=50, sigma_min=0.01, sigma_max=20)
    x0 = torch.zeros(500, 1, 2, 2, dtype=dtype)
    torch.manual_seed(0)
    sigma = schedule.sample_batch(x0)
    assert sigma.shape == (500,) and sigma.dtype == dtype and sigma.device == x0.device
    assert bool(torch.isin(sigma.float(), schedule.sigmas).all())       # values from the schedule
    assert len(sigma.unique()) > 40                                     # and many of the 50 of them
    torch.manual_seed(0)
    torch.testing.assert_close(sigma, sd.ScheduleLogLinear(N=50, sigma_min=0.01, sigma_max=20).sample_batch(x0))


def test_sample_batch_is_uniform():
    schedule = ScheduleLogLinear(N=4)
    torch.manual_seed(1)
    sigma = schedule.sample_batch(torch.zeros(40000))
    counts = torch.stack([(sigma == s).sum() for s in schedule.sigmas]).float()
    assert counts.sum() == 40000
    torch.testing.assert_close(counts / 40000, torch.full((4,), 0.25), atol=0.01, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_sample_batch_on_gpu():
    sigma = ScheduleDDPM().sample_batch(torch.zeros(3, 2, device="cuda"))
    assert sigma.device.type == "cuda"


def test_repr_and_custom_schedule():
    s = Schedule(torch.tensor([0.1, 1.0, 10.0]))
    assert repr(s) == "Schedule(N=3, sigma_min=0.1, sigma_max=10)"
    torch.testing.assert_close(s.sample_sigmas(2), torch.tensor([10.0, 1.0, 0.1]))
    assert math.isclose(float(ScheduleLogLinear(N=5, sigma_min=0.5, sigma_max=2)[2]), 1.0, rel_tol=1e-6)
