"""The generalised sampler: equal to smalldiffusion's for the same seed, and against
independent references: DDIM (gam=1, mu=0) against diffusers' DDIMScheduler and the
closed form; DDPM (gam=1, mu=0.5) against diffusers' DDPMScheduler and the closed-form
posterior mean and variance."""
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from smalldiffusion import model as sd_model
from smalldiffusion import model_unet as sd_unet
from smalldiffusion import samples as sd_samples
from torch import nn

from smallunet import (CondEmbedderLabel, ModelMixin, Scaled, ScheduleDDPM, ScheduleLogLinear, Unet,
                       samples)

pytestmark = pytest.mark.usefixtures("one_thread")


def rel_diff(a, b) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


class GaussEps(nn.Module, ModelMixin):
    """The exact noise predictor for data x0 ~ N(0, I): E[eps | x0 + sigma eps = x] =
    sigma / (1 + sigma^2) x. Deterministic, linear in x, no weights."""

    def __init__(self, input_dims=(1, 4, 4)):
        super().__init__()
        self.input_dims = input_dims

    def forward(self, x, sigma, cond=None):
        s = sigma.reshape((-1,) + (1,) * (x.dim() - 1)) if sigma.numel() > 1 else sigma
        return x * s / (1 + s ** 2)


def tiny_pair(conditional=False):
    """smalldiffusion's Scaled(Unet) and ours with the same weights."""
    kw = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,))
    torch.manual_seed(0)
    theirs = sd_model.Scaled(sd_unet.Unet)(
        8, 1, 1, **kw, cond_embed=sd_model.CondEmbedderLabel(128, 4) if conditional else None)
    ours = Scaled(Unet)(8, 1, 1, **kw, cond_embed=CondEmbedderLabel(128, 4) if conditional else None)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


# --- the same as smalldiffusion --------------------------------------------------------------

@pytest.mark.parametrize("gam, mu", [(1.0, 0.0), (1.0, 0.5), (2.0, 0.0), (1.6, 0.3)])
def test_equals_smalldiffusion(gam, mu):
    ours, theirs = tiny_pair()
    sigmas = ScheduleLogLinear(N=100, sigma_min=0.01, sigma_max=20).sample_sigmas(5)
    torch.manual_seed(7)
    got = list(samples(ours, sigmas, gam=gam, mu=mu, batchsize=3))
    torch.manual_seed(7)
    ref = list(sd_samples(theirs, sigmas, gam=gam, mu=mu, batchsize=3))
    assert len(got) == len(ref) == 5
    for a, b in zip(got, ref):
        assert a.shape == (3, 1, 8, 8)
        assert rel_diff(a, b) < 1e-5
    torch.manual_seed(8)
    assert rel_diff(list(samples(ours, sigmas, gam=gam, mu=mu, batchsize=3))[-1], ref[-1]) > 1e-2


@pytest.mark.parametrize("cfg_scale, mu", [(0.0, 0.0), (2.0, 0.0), (3.0, 0.5)])
def test_equals_smalldiffusion_conditional(cfg_scale, mu):
    ours, theirs = tiny_pair(conditional=True)
    sigmas = ScheduleLogLinear(N=100, sigma_min=0.01, sigma_max=20).sample_sigmas(4)
    cond = torch.tensor([0, 1, 3])
    torch.manual_seed(3)
    got = list(samples(ours, sigmas, mu=mu, cfg_scale=cfg_scale, batchsize=3, cond=cond))
    torch.manual_seed(3)
    ref = list(sd_samples(theirs, sigmas, mu=mu, cfg_scale=cfg_scale, batchsize=3, cond=cond))
    for a, b in zip(got, ref):
        assert rel_diff(a, b) < 1e-5


def test_starting_point_xt():
    ours, theirs = tiny_pair()
    sigmas = torch.tensor([5.0, 1.0, 0.2, 0.05])
    xt = torch.randn(2, 1, 8, 8) * 5
    got = list(samples(ours, sigmas, xt=xt.clone()))
    ref = list(sd_samples(theirs, sigmas, xt=xt.clone()))
    assert len(got) == 3 and rel_diff(got[-1], ref[-1]) < 1e-5


# --- DDIM: gam=1, mu=0 -----------------------------------------------------------------------

def test_ddim_closed_form():
    """Each step moves along the predicted noise: x_prev = x + (sigma_prev - sigma) eps(x, sigma)."""
    model = GaussEps()
    sigmas = ScheduleLogLinear(N=50, sigma_min=0.02, sigma_max=10).sample_sigmas(8)
    x = torch.randn(4, 1, 4, 4) * sigmas[0]
    for sig, sig_prev, got in zip(sigmas[:-1], sigmas[1:], samples(model, sigmas, xt=x)):
        x = x + (sig_prev - sig) * model(x, sig)
        torch.testing.assert_close(got, x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps", [10, 25])
def test_ddim_equals_diffusers(steps):
    """diffusers' DDIM (eta=0) works on x_VP = sqrt(alpha_bar) x; with
    sigma = sqrt(1/alpha_bar - 1) it takes the same steps as ours."""
    model, schedule = GaussEps(), ScheduleDDPM()
    ddim = DDIMScheduler(timestep_spacing="trailing", clip_sample=False, set_alpha_to_one=False)
    ddim.set_timesteps(steps)
    alpha_bar = ddim.alphas_cumprod
    sigmas = schedule.sample_sigmas(steps)
    torch.testing.assert_close(sigmas[:-1], (1 / alpha_bar[ddim.timesteps] - 1).sqrt(), rtol=1e-5, atol=0)

    torch.manual_seed(0)
    x = torch.randn(3, 1, 4, 4) * sigmas[0]
    ours = list(samples(model, sigmas, gam=1, mu=0, xt=x))
    x_vp = alpha_bar[ddim.timesteps[0]].sqrt() * x
    step = 1000 // steps
    for i, t in enumerate(ddim.timesteps):
        eps = model(x_vp / alpha_bar[t].sqrt(), (1 / alpha_bar[t] - 1).sqrt())
        x_vp = ddim.step(eps, t, x_vp, eta=0.0).prev_sample
        a_prev = alpha_bar[t - step] if t - step >= 0 else ddim.final_alpha_cumprod
        assert rel_diff(ours[i], x_vp / a_prev.sqrt()) < 1e-5


# --- DDPM: gam=1, mu=0.5 ---------------------------------------------------------------------

def one_step(model, sig, sig_prev, x, seed, mu=0.5):
    """One sampler step from x with the noise of torch.Generator().manual_seed(seed)."""
    (out,) = samples(model, torch.stack([sig, sig_prev]), mu=mu, xt=x,
                     generator=torch.Generator().manual_seed(seed))
    return out


def mean_and_std(step, noise):
    """Split x_prev = mean + std * z, std one number, using two draws z1, z2 of known noise."""
    out1, out2 = step(1), step(2)
    dz = noise(1) - noise(2)
    std = ((out1 - out2) * dz).sum() / (dz * dz).sum()      # least squares
    torch.testing.assert_close(out1 - out2, std * dz, rtol=1e-4, atol=1e-6)   # one std for all
    return out1 - std * noise(1), std


def test_ddpm_closed_form_posterior():
    """The DDPM step samples q(x_prev | x, x0 = x0_hat): in sigma terms its mean is
    x0_hat + (sp^2 / s^2)(x - x0_hat) and its variance sp^2 (s^2 - sp^2) / s^2, with
    x0_hat = x - s eps."""
    model = GaussEps()
    torch.manual_seed(0)
    x = torch.randn(2, 1, 4, 4) * 4
    for sig, sig_prev in [(4.0, 2.0), (1.0, 0.7), (0.3, 0.01)]:
        sig, sig_prev = torch.tensor(sig), torch.tensor(sig_prev)
        mean, std = mean_and_std(lambda seed: one_step(model, sig, sig_prev, x, seed),
                                 lambda seed: model.rand_input(2, generator=torch.Generator().manual_seed(seed)))
        x0_hat = x - sig * model(x, sig)
        torch.testing.assert_close(mean, x0_hat + sig_prev ** 2 / sig ** 2 * (x - x0_hat), rtol=1e-5, atol=1e-6)
        expected_std = (sig_prev ** 2 * (sig ** 2 - sig_prev ** 2) / sig ** 2).sqrt()
        torch.testing.assert_close(std, expected_std, rtol=1e-4, atol=1e-7)


def test_ddpm_equals_diffusers():
    """diffusers' DDPMScheduler (fixed_small variance) on x_VP = sqrt(alpha_bar) x: the
    same posterior mean and noise standard deviation at every step, and, with the
    same generator, the same chain. The last step goes to alpha_bar = 1 (sigma = 0)."""
    steps, model, schedule = 8, GaussEps(), ScheduleDDPM()
    ddpm = DDPMScheduler(clip_sample=False, timestep_spacing="trailing")
    ddpm.set_timesteps(steps)
    alpha_bar = ddpm.alphas_cumprod
    ts = ddpm.timesteps
    sigmas = torch.cat([(1 / alpha_bar[ts] - 1).sqrt(), torch.zeros(1)])
    torch.testing.assert_close(sigmas[:-1], schedule.sample_sigmas(steps)[:-1], rtol=1e-5, atol=0)

    torch.manual_seed(0)
    x = torch.randn(3, 1, 4, 4) * sigmas[0]
    x_vp = alpha_bar[ts[0]].sqrt() * x
    for i, t in enumerate(ts):
        a, a_prev = alpha_bar[t], (alpha_bar[ts[i + 1]] if i + 1 < steps else torch.tensor(1.0))
        eps = model(x_vp / a.sqrt(), sigmas[i])

        def theirs(seed):
            return ddpm.step(eps, t, x_vp, generator=torch.Generator().manual_seed(seed)).prev_sample / a_prev.sqrt()

        def ours(seed):
            return one_step(model, sigmas[i], sigmas[i + 1], x_vp / a.sqrt(), seed)

        def noise(seed):
            return torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
        if i + 1 < steps:
            mean, std = mean_and_std(ours, noise)
            ref_mean, ref_std = mean_and_std(theirs, noise)
            assert rel_diff(mean, ref_mean) < 1e-5
            torch.testing.assert_close(std, ref_std, rtol=1e-4, atol=1e-7)
        assert rel_diff(ours(10 + i), theirs(10 + i)) < 1e-5   # the same noise, the same step
        x_vp = ddpm.step(eps, t, x_vp, generator=torch.Generator().manual_seed(10 + i)).prev_sample


@pytest.mark.parametrize("mu", [0.0, 0.5], ids=["DDIM", "DDPM"])
def test_samples_the_data_distribution(mu):
    """With the exact eps of N(0, 1) data, DDIM and DDPM started from that data's noisy
    marginal N(0, 1 + sigma_max^2) end near N(0, 1): mean 0, variance 1 (up to the
    sampling error of 20000 draws and the discretisation of 500 steps)."""
    model = GaussEps(input_dims=(1,))
    sigmas = ScheduleLogLinear(N=2000, sigma_min=0.002, sigma_max=80).sample_sigmas(500)
    x = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0)) * (1 + 80 ** 2) ** 0.5
    *_, x0 = samples(model, sigmas, mu=mu, xt=x, generator=torch.Generator().manual_seed(1))
    assert abs(x0.mean().item()) < 0.03 and abs(x0.var().item() - 1) < 0.05


# --- the generator itself ---------------------------------------------------------------------

def test_yields_one_tensor_per_step():
    model = GaussEps()
    for steps in (1, 3, 10):
        sigmas = ScheduleLogLinear(N=20).sample_sigmas(steps)
        out = list(samples(model, sigmas, batchsize=5))
        assert len(out) == len(sigmas) - 1 == steps
        assert all(o.shape == (5, 1, 4, 4) and o.dtype == torch.float32 for o in out)
    # steps = N: the last step has length zero and changes nothing, and adds no noise
    sigmas = ScheduleLogLinear(N=1000, sigma_min=0.002, sigma_max=80).sample_sigmas(1000)
    assert sigmas[-1] == sigmas[-2]
    for mu in (0.0, 0.5):
        out = list(samples(GaussEps(input_dims=(1,)), sigmas, mu=mu, batchsize=200))
        assert len(out) == 1000 and torch.isfinite(out[-1]).all() and torch.equal(out[-1], out[-2])


def test_generator_makes_it_reproducible():
    model, sigmas = GaussEps(), ScheduleLogLinear(N=20).sample_sigmas(5)
    a = list(samples(model, sigmas, mu=0.5, batchsize=2, generator=torch.Generator().manual_seed(0)))
    b = list(samples(model, sigmas, mu=0.5, batchsize=2, generator=torch.Generator().manual_seed(0)))
    c = list(samples(model, sigmas, mu=0.5, batchsize=2, generator=torch.Generator().manual_seed(1)))
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[-1], c[-1])


def test_model_left_in_eval_mode_and_no_grad():
    ours, _ = tiny_pair()
    ours.train()
    *_, x0 = samples(ours, torch.tensor([2.0, 0.5]), batchsize=1)
    assert not ours.training and not x0.requires_grad


def test_low_precision_model_samples_in_float32():
    """A bfloat16 model is called in bfloat16; the steps accumulate in float32."""
    ours, _ = tiny_pair()
    ours = ours.to(torch.bfloat16)
    *_, x0 = samples(ours, torch.tensor([2.0, 0.5, 0.1]), batchsize=2)
    assert x0.dtype == torch.float32 and torch.isfinite(x0).all()


def test_usage_lines_from_the_seed():
    """The usage lines of smalldiffusion's U-Net example, with batchsize 2."""
    torch.manual_seed(0)
    model = Scaled(Unet)(28, 1, 1, ch=64, ch_mult=(1, 1, 2), attn_resolutions=(14,))
    schedule = ScheduleLogLinear(sigma_min=0.01, sigma_max=20, N=800)
    *xt, x0 = samples(model, schedule.sample_sigmas(20), gam=1.6, batchsize=2)
    assert len(xt) == 19
    assert x0.shape == (2, 1, 28, 28) and torch.isfinite(x0).all()


@pytest.mark.parametrize("name", ["samples", "samples_heun"])
def test_the_loop_is_in_the_samplers_own_body_and_fits_the_page(name):
    """Issue 23: a reader who opens a sampler (chapter 8 prints both) sees its loop in
    the function's own body, the argument checks one call away, in at most 35 lines
    besides the docstring, each line at most 76 characters (the book's column)."""
    import ast
    import inspect

    import smallunet.sampling as sampling
    src = inspect.getsource(getattr(sampling, name))
    fn = ast.parse(src).body[0]
    doc = fn.body[0]
    assert isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
    lines = src.splitlines()
    assert len(lines) - (doc.end_lineno - doc.lineno + 1) <= 35, len(lines)
    assert max(map(len, lines)) <= 76, max(lines, key=len)
    assert "= _check_sampling(" in src and "for " in src and "pairwise(sigmas)" in src
    loops = [n for n in ast.walk(fn) if isinstance(n, ast.For)]
    assert loops and any(isinstance(n, ast.Yield) for loop in loops for n in ast.walk(loop))
