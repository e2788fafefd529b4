"""Bad input gets a clear error: a ValueError or TypeError raised by smallunet's own
checks (not from deep inside PyTorch) whose message names what was expected and
what was given. And no `assert` guards a user's mistake anywhere in the package."""
import ast
import contextlib
import pathlib
import re

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import smallunet
from smallunet import (Attention, AttnBlock, CondEmbedderLabel, Normalize, ResnetBlock, Schedule,
                       ScheduleCosine, ScheduleDDPM, ScheduleLDM, ScheduleLogLinear, ScheduleSigmoid,
                       Scaled, SigmaEmbedderSinCos, Unet, generate_train_sample, get_sigma_embeds,
                       samples, training_loop)

pytestmark = pytest.mark.usefixtures("one_thread")

PACKAGE = pathlib.Path(smallunet.__file__).resolve().parent


@contextlib.contextmanager
def our_error(exc, match):
    """pytest.raises that also checks the error was raised inside smallunet."""
    with pytest.raises(exc, match=match) as info:
        yield info
    where = pathlib.Path(str(info.traceback[-1].path)).resolve()
    assert PACKAGE in where.parents, f"raised from {where}, not by smallunet's checks"


def esc(s: str) -> str:
    return re.escape(s)


KW = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=())


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Scaled(Unet)(8, 1, 1, **KW).eval()


@pytest.fixture(scope="module")
def cond_model():
    torch.manual_seed(0)
    return Scaled(Unet)(8, 1, 1, **KW, cond_embed=CondEmbedderLabel(128, num_classes=3)).eval()


# --- building a Unet -------------------------------------------------------------------------

def test_channels_not_divisible_by_32():
    with our_error(ValueError, esc("ch=48 must be divisible by 32 (GroupNorm uses 32 groups); try 64")):
        Unet(8, 1, 1, ch=48)
    with our_error(ValueError, esc("in_ch=40 must be divisible by 32")):
        ResnetBlock(in_ch=40, dropout=0.0)
    with our_error(ValueError, esc("out_ch=16 must be divisible by 32")):
        ResnetBlock(in_ch=32, out_ch=16, dropout=0.0)
    with our_error(ValueError, esc("ch=20 must be divisible by 32")):
        Normalize(20)
    with our_error(ValueError, esc("ch=100 must be divisible by 32")):
        AttnBlock(100)


def test_in_dim_not_divisible():
    with our_error(ValueError, esc("in_dim=30 must be divisible by 4 = 2**(len(ch_mult)-1) with ch_mult=(1, 2, 2)")):
        Unet(30, 1, 1, ch=32, ch_mult=(1, 2, 2))
    with our_error(ValueError, esc("in_dim=28 must be divisible by 8 = 2**(len(ch_mult)-1)")):
        Unet(28, 1, 1, ch=32, ch_mult=(1, 2, 2, 2))


def test_bad_ch_mult():
    with our_error(ValueError, esc("ch_mult must hold at least one multiplier (one per resolution), got ()")):
        Unet(8, 1, 1, ch=32, ch_mult=())
    with our_error(TypeError, esc("ch_mult must hold ints, got (1, 1.5) (bad entry 1.5, float)")):
        Unet(8, 1, 1, ch=32, ch_mult=(1, 1.5))
    with our_error(ValueError, esc("ch_mult must hold positive ints, got (1, 0) (bad entry 0)")):
        Unet(8, 1, 1, ch=32, ch_mult=(1, 0))
    with our_error(TypeError, esc("ch_mult must be a tuple of positive ints such as (1, 2, 2), got '122'")):
        Unet(8, 1, 1, ch=32, ch_mult="122")
    with our_error(TypeError, esc("ch_mult must be a tuple of positive ints such as (1, 2, 2), got 2")):
        Unet(8, 1, 1, ch=32, ch_mult=2)


def test_attention_resolution_never_reached():
    with our_error(ValueError, esc("attn_resolutions=(7,) holds 7, which the model never reaches: "
                                   "its resolutions are (28, 14)")):
        Unet(28, 1, 1, ch=32, ch_mult=(1, 2), attn_resolutions=(7,))
    with our_error(TypeError, esc("attn_resolutions must be a tuple of ints such as (14,), got the int 14")):
        Unet(28, 1, 1, ch=32, ch_mult=(1, 2), attn_resolutions=14)
    with our_error(TypeError, esc("attn_resolutions must be a tuple of ints such as (16,), got '14'")):
        Unet(28, 1, 1, ch=32, ch_mult=(1, 2), attn_resolutions="14")
    with our_error(TypeError, esc("attn_resolutions must hold ints, got (14.0,) (bad entry 14.0, float)")):
        Unet(28, 1, 1, ch=32, ch_mult=(1, 2), attn_resolutions=(14.0,))


@pytest.mark.parametrize("dropout", [1.0, -0.1, 1.5])
def test_dropout_outside_unit_interval(dropout):
    with our_error(ValueError, esc(f"dropout must be in [0.0, 1.0), got dropout={dropout}")):
        Unet(8, 1, 1, **KW, dropout=dropout)
    with our_error(ValueError, esc(f"dropout must be in [0.0, 1.0), got dropout={dropout}")):
        ResnetBlock(in_ch=32, dropout=dropout)


@pytest.mark.parametrize("dropout_prob", [-0.1, 1.5])
def test_label_dropout_outside_unit_interval(dropout_prob):
    with our_error(ValueError, esc(f"dropout_prob must be in [0.0, 1.0], got dropout_prob={dropout_prob}")):
        CondEmbedderLabel(32, 10, dropout_prob=dropout_prob)


def test_heads_that_do_not_divide_the_channels():
    with our_error(ValueError, esc("num_heads=3 must divide ch=64 (each head gets ch // num_heads channels)")):
        AttnBlock(64, num_heads=3)
    with our_error(ValueError, esc("num_heads must be >= 1, got num_heads=0")):
        AttnBlock(64, num_heads=0)


def test_wrong_types():
    with our_error(TypeError, esc("ch must be an int, got 32.0 (float)")):
        Unet(8, 1, 1, ch=32.0)
    with our_error(TypeError, esc("in_ch must be an int, got '1' (str)")):
        Unet(8, "1", 1)
    with our_error(TypeError, esc("in_dim must be an int, got True (bool)")):
        Unet(True, 1, 1)
    with our_error(TypeError, esc("dropout must be a number, got '0.1' (str)")):
        Unet(8, 1, 1, **KW, dropout="0.1")
    with our_error(TypeError, esc("sig_embed must be an nn.Module or None, got function")):
        Unet(8, 1, 1, **KW, sig_embed=lambda b, s: s)
    with our_error(TypeError, esc("ch must be an int, got 64.0 (float)")):
        Normalize(64.0)


def test_too_few_blocks_or_channels():
    with our_error(ValueError, esc("num_res_blocks must be >= 1, got num_res_blocks=0")):
        Unet(8, 1, 1, ch=32, ch_mult=(2, 2), num_res_blocks=0)
    with our_error(ValueError, esc("out_ch must be >= 1, got out_ch=0")):
        Unet(8, 1, 0)
    with our_error(ValueError, esc("embed_ch_mult must be >= 1, got embed_ch_mult=0")):
        Unet(8, 1, 1, **KW, embed_ch_mult=0)


# --- calling a Unet --------------------------------------------------------------------------

def test_input_of_wrong_rank_channels_or_size(model):
    s = torch.tensor(1.0)
    with our_error(ValueError, esc("x must have shape (B, C, H, W) (4 dimensions), got 3 dimensions "
                                   "with shape (1, 8, 8)")):
        model(torch.randn(1, 8, 8), s)
    with our_error(ValueError, esc("x must have 1 channels, got shape (2, 3, 8, 8) with 3 channels")):
        model(torch.randn(2, 3, 8, 8), s)
    with our_error(ValueError, esc("x must be 8x8 (shape (B, 1, 8, 8)), got 16x16 (shape (2, 1, 16, 16))")):
        model(torch.randn(2, 1, 16, 16), s)
    with our_error(ValueError, esc("x must be 8x8 (shape (B, 1, 8, 8)), got 8x7")):
        model(torch.randn(2, 1, 8, 7), s)


def test_input_of_wrong_type_or_dtype(model):
    s = torch.tensor(1.0)
    with our_error(TypeError, esc("x must be a torch.Tensor, got ndarray")):
        model(torch.randn(2, 1, 8, 8).numpy(), s)
    with our_error(TypeError, esc("x must be a floating-point tensor, got dtype torch.uint8")):
        model(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), s)
    with our_error(TypeError, esc("x has dtype torch.float64 but the model's weights are torch.float32; "
                                  "pass x.to(torch.float32)")):
        model(torch.randn(2, 1, 8, 8, dtype=torch.float64), s)
    with our_error(TypeError, esc("sigma must be a torch.Tensor, got float")):
        model(torch.randn(2, 1, 8, 8), 1.0)


def test_sigma_batch_does_not_match(model):
    x = torch.randn(4, 1, 8, 8)
    with our_error(ValueError, esc("sigma must hold 1 value or one per example (4), got shape (3,) with 3 values")):
        model(x, torch.ones(3))
    with our_error(ValueError, esc("sigma must hold 1 value or one per example (4), got shape (2, 1, 1, 1)")):
        model(x, torch.ones(2, 1, 1, 1))
    with our_error(ValueError, esc("sigma must hold 1 value or one per example (4), got shape (3,)")):
        Unet(8, 1, 1, **KW)(x, torch.ones(3))          # without Scaled too


def test_conditional_model_needs_labels_of_the_batch(cond_model, model):
    x, s = torch.randn(4, 1, 8, 8), torch.tensor(1.0)
    with our_error(ValueError, esc("this Unet is conditional (cond_embed is set): pass labels, cond of shape (4,)")):
        cond_model(x, s)
    with our_error(ValueError, esc("cond must have the batch of x (4,), got (3,)")):
        cond_model(x, s, cond=torch.tensor([0, 1, 2]))
    with our_error(ValueError, esc("cond must have the batch of x (4,), got list")):
        cond_model(x, s, cond=[0, 1, 2, 0])
    with our_error(ValueError, esc("labels must be in [0, 3] (3 is the null class), got values from 0 to 7")):
        cond_model(x, s, cond=torch.tensor([0, 1, 2, 7]))
    with our_error(ValueError, esc("labels must be a 1-D integer tensor (B,), got dtype torch.float32")):
        cond_model(x, s, cond=torch.zeros(4))
    with our_error(ValueError, esc("this Unet is unconditional (cond_embed is None) but got cond")):
        model(x, s, cond=torch.tensor([0, 1, 2, 0]))


def test_blocks_check_their_inputs():
    with our_error(ValueError, esc("x must have shape (B, 32, H, W), got (2, 64, 4, 4)")):
        ResnetBlock(in_ch=32, dropout=0.0, temb_channels=8)(torch.randn(2, 64, 4, 4), torch.randn(2, 8))
    with our_error(ValueError, esc("temb must have shape (2, 8), got (2, 16)")):
        ResnetBlock(in_ch=32, dropout=0.0, temb_channels=8)(torch.randn(2, 32, 4, 4), torch.randn(2, 16))
    with our_error(ValueError, esc("x must have shape (B, 64, H, W), got (64, 4, 4)")):
        AttnBlock(64)(torch.randn(64, 4, 4))
    with our_error(ValueError, esc("x must have shape (B, 64, H, W), got (5,)")):
        AttnBlock(64)(torch.randn(5))
    with our_error(ValueError, esc("x must have shape (B, N, 32), got (2, 5, 16)")):
        Attention(head_dim=8, num_heads=4)(torch.randn(2, 5, 16))
    with our_error(ValueError, esc("sigma must hold 1 value or one per example (2), got shape (3,)")):
        get_sigma_embeds(2, torch.ones(3))
    with our_error(ValueError, esc("sigma must hold 1 value or one per example (5), got shape (2,)")):
        SigmaEmbedderSinCos(16)(5, torch.ones(2))


# --- schedules -------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [ScheduleLogLinear, ScheduleDDPM, ScheduleLDM, ScheduleSigmoid, ScheduleCosine])
def test_schedule_with_no_levels(cls):
    with our_error(ValueError, esc("N must be >= 1, got N=0")):
        cls(N=0)
    with our_error(TypeError, esc("N must be an int, got 10.0 (float)")):
        cls(N=10.0)


def test_schedule_sigma_range():
    with our_error(ValueError, esc("sigma_min must be in (0.0, inf), got sigma_min=0.0")):
        ScheduleLogLinear(N=10, sigma_min=0)
    with our_error(ValueError, esc("sigma_min must be in (0.0, inf), got sigma_min=-1.0")):
        ScheduleLogLinear(N=10, sigma_min=-1)
    with our_error(ValueError, esc("sigma_min=20 must be smaller than sigma_max=10")):
        ScheduleLogLinear(N=10, sigma_min=20, sigma_max=10)
    with our_error(ValueError, esc("sigma_min=5 must be smaller than sigma_max=5")):
        ScheduleLogLinear(N=10, sigma_min=5, sigma_max=5)
    with our_error(ValueError, esc("beta_start=0.02 must be <= beta_end=0.0001")):
        ScheduleDDPM(beta_start=0.02, beta_end=0.0001)
    with our_error(ValueError, esc("beta_end must be in (0.0, 1.0), got beta_end=1.5")):
        ScheduleLDM(beta_end=1.5)


def test_custom_schedule_must_increase():
    with our_error(ValueError, esc("sigmas must increase (smallest noise first), got sigmas[0]=3 > sigmas[1]=2")):
        Schedule(torch.tensor([3.0, 2.0, 1.0]))
    with our_error(ValueError, esc("sigmas must be > 0 (log(sigma) feeds the embedding), got min(sigmas)=0")):
        Schedule(torch.tensor([0.0, 1.0]))
    with our_error(TypeError, esc("sigmas must be a floating-point tensor, got dtype torch.int64")):
        Schedule(torch.tensor([1, 2, 3]))


def test_sample_sigmas_steps():
    schedule = ScheduleLogLinear(N=10)
    with our_error(ValueError, esc("steps must be >= 1, got steps=0")):
        schedule.sample_sigmas(0)
    with our_error(ValueError, esc("steps=11 must be at most the schedule's length N=10")):
        schedule.sample_sigmas(11)
    with our_error(TypeError, esc("steps must be an int, got 2.5 (float)")):
        schedule.sample_sigmas(2.5)


def test_sample_batch_needs_float_images():
    with our_error(TypeError, esc("x0 must be a floating-point tensor, got dtype torch.uint8")):
        ScheduleDDPM().sample_batch(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))


# --- sampling --------------------------------------------------------------------------------

SIGMAS = torch.tensor([5.0, 1.0, 0.1])


@pytest.mark.parametrize("mu", [1.0, -0.5, 2.0])
def test_sampling_mu_outside(model, mu):
    with our_error(ValueError, esc(f"mu must be in [0.0, 1.0), got mu={mu}")):
        samples(model, SIGMAS, mu=mu)          # raised at the call, before the first step


def test_sampling_sigmas_that_do_not_decrease(model):
    with our_error(ValueError, esc("sigmas must decrease (largest noise first), got sigmas[1]=1 < sigmas[2]=2")):
        samples(model, torch.tensor([5.0, 1.0, 2.0]))
    with our_error(ValueError, esc("sigmas must decrease (largest noise first), got sigmas[0]=0.1 < sigmas[1]=1")):
        samples(model, torch.tensor([0.1, 1.0, 5.0]))
    with our_error(ValueError, esc("sigmas must be 1-D with at least 2 values (N steps need N+1), got shape (1,)")):
        samples(model, torch.tensor([5.0]))
    with our_error(ValueError, esc("sigmas must be > 0 (only the last may be 0")):
        samples(model, torch.tensor([5.0, 0.0, 0.0]))


def test_sampling_batchsize(model):
    with our_error(ValueError, esc("batchsize must be >= 1, got batchsize=0")):
        samples(model, SIGMAS, batchsize=0)
    with our_error(TypeError, esc("batchsize must be an int, got 2.0 (float)")):
        samples(model, SIGMAS, batchsize=2.0)


def test_sampling_xt_of_wrong_shape(model):
    with our_error(ValueError, esc("xt must have shape (B, 1, 8, 8), got (2, 1, 7, 7)")):
        samples(model, SIGMAS, xt=torch.randn(2, 1, 7, 7))
    with our_error(ValueError, esc("xt must have shape (B, 1, 8, 8), got (1, 8, 8)")):
        samples(model, SIGMAS, xt=torch.randn(1, 8, 8))
    with our_error(TypeError, esc("xt must be a floating-point tensor, got dtype torch.int64")):
        samples(model, SIGMAS, xt=torch.zeros(2, 1, 8, 8, dtype=torch.long))


def test_sampling_labels(model, cond_model):
    with our_error(ValueError, esc("cond must have one label per sample (2,), got shape (3,)")):
        samples(cond_model, SIGMAS, batchsize=2, cond=torch.tensor([0, 1, 2]))
    with our_error(ValueError, esc("cfg_scale=2.0 needs labels: pass cond")):
        samples(cond_model, SIGMAS, cfg_scale=2.0)
    with our_error(ValueError, esc("cfg_scale=2.0 needs a conditional model (cond_embed is None)")):
        samples(model, SIGMAS, cfg_scale=2.0, cond=torch.tensor([0]))


def test_sampling_wrong_model_or_generator(model):
    with our_error(TypeError, esc("model must be an nn.Module, got function")):
        samples(lambda x, s: x, SIGMAS)
    with our_error(TypeError, esc("model must have a rand_input method (a ModelMixin such as Unet), "
                                  "Linear has none")):
        samples(nn.Linear(2, 2), SIGMAS)
    with our_error(TypeError, esc("generator must be a CPU torch.Generator")):
        samples(model, SIGMAS, generator=0)


# --- training --------------------------------------------------------------------------------

def test_training_loop_arguments(model):
    loader, schedule = DataLoader(torch.randn(4, 1, 8, 8), batch_size=2), ScheduleLogLinear(N=10)
    with our_error(TypeError, esc("schedule must be a Schedule, got Tensor")):
        training_loop(loader, model, schedule.sigmas)          # raised at the call
    with our_error(ValueError, esc("epochs must be >= 1, got epochs=0")):
        training_loop(loader, model, schedule, epochs=0)
    with our_error(ValueError, esc("lr must be in (0.0, inf), got lr=0.0")):
        training_loop(loader, model, schedule, lr=0)
    with our_error(TypeError, esc("model must have a get_loss method (a ModelMixin such as Unet), Linear has none")):
        training_loop(loader, nn.Linear(2, 2), schedule)
    with our_error(TypeError, esc("loader must be an iterable of batches such as a DataLoader, got Tensor")):
        training_loop(torch.randn(4, 1, 8, 8), model, schedule)


def test_training_batches():
    schedule, x = ScheduleLogLinear(N=10), torch.randn(4, 1, 8, 8)
    with our_error(ValueError, esc("a conditional batch must be a pair (images, labels), got Tensor")):
        generate_train_sample(x, schedule, conditional=True)
    with our_error(ValueError, esc("a conditional batch must be a pair (images, labels), got a list of 3 items")):
        generate_train_sample([x, x, x], schedule, conditional=True)
    with our_error(ValueError, esc("labels must have one entry per image (4,), got shape (3,)")):
        generate_train_sample((x, torch.arange(3)), schedule, conditional=True)
    with our_error(ValueError, esc("an unconditional batch must be a tensor of images, got a list of 2 items; "
                                   "for (images, labels) batches pass conditional=True")):
        generate_train_sample([x, torch.arange(4)], schedule)
    with our_error(TypeError, esc("x0 must be a floating-point tensor, got dtype torch.uint8")):
        generate_train_sample(x.to(torch.uint8), schedule)


# --- no assert for a user's mistake --------------------------------------------------------

def test_no_assert_statements_in_the_package():
    """`assert` vanishes under python -O; the package checks with if/raise instead."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Assert):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not found, f"assert statements in smallunet: {found}"


def test_sampling_non_finite_and_mismatched_input(model, cond_model):
    with our_error(ValueError, esc("gam must be in (-inf, inf), got gam=nan")):
        samples(model, SIGMAS, gam=float("nan"))
    with our_error(ValueError, esc("gam must be in (-inf, inf), got gam=inf")):
        samples(model, SIGMAS, gam=float("inf"))
    with our_error(ValueError, esc("sigmas must be finite, got [inf, 1.0, 0.5]")):
        samples(model, torch.tensor([float("inf"), 1.0, 0.5]))
    with our_error(ValueError, esc("batchsize=3 disagrees with xt of batch 2 (shape (2, 1, 8, 8))")):
        samples(model, SIGMAS, batchsize=3, xt=torch.randn(2, 1, 8, 8))
    with our_error(TypeError, esc("not the schedule itself: call schedule.sample_sigmas(steps)")):
        samples(model, ScheduleLogLinear(N=10))
    with our_error(ValueError, esc("cfg_scale must be in [0.0, inf), got cfg_scale=-1.0")):
        samples(cond_model, SIGMAS, cfg_scale=-1.0, cond=torch.tensor([0]))
    with our_error(TypeError, esc("cond must hold integer class labels, got dtype torch.float32")):
        samples(cond_model, SIGMAS, batchsize=2, cond=torch.tensor([0.0, 1.0]))
    n = cond_model.cond_embed.num_classes
    with our_error(ValueError, esc(f"cond must hold labels in [0, {n}), got values from 0 to {n}")):
        samples(cond_model, SIGMAS, batchsize=2, cond=torch.tensor([0, n]))


def test_load_pretrained_bad_arguments(tmp_path):
    from smallunet import load_pretrained
    with our_error(ValueError, esc("dtype must be a torch.dtype or one of 'float32', 'float16', 'bfloat16', "
                                   "'float64', got 'half'")):
        load_pretrained(dtype="half")
    assert next(load_pretrained(dtype="float16").parameters()).dtype == torch.float16
    with our_error(ValueError, esc("is a directory; give a .safetensors weights file")):
        load_pretrained(tmp_path)
    from smallunet.pretrained import WEIGHTS_DIR, pretrained_info
    with our_error(ValueError, esc("holds no 'model' weights (model.*); it holds ['ema']")):
        load_pretrained(WEIGHTS_DIR / pretrained_info()["file"], weights="model")
    with our_error(ValueError, esc("weights must be 'ema' or 'model', got 'raw'")):
        load_pretrained(weights="raw")
    if not torch.cuda.is_available():
        with our_error(ValueError, esc("device='cuda': CUDA is not available on this machine")):
            load_pretrained(device="cuda")
