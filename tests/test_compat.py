"""Checkpoint compatibility with smalldiffusion 0.5.0 (the reference, used only here).

A state_dict of smalldiffusion's Unet loads into ours with strict=True, and with the
same weights both compute the same function, block by block and as a whole.
"""
import pytest
import torch
from smalldiffusion import model as sd_model
from smalldiffusion import model_unet as sd_unet

import smallunet
from smallunet import (Attention, AttnBlock, CondEmbedderLabel, CondSequential, Downsample,
                       Normalize, PredV, PredX0, ResnetBlock, Scaled, SigmaEmbedderSinCos,
                       Unet, Upsample, get_sigma_embeds)

pytestmark = pytest.mark.usefixtures("one_thread")

RTOL = 1e-5  # relative difference allowed in float32


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def load_theirs(ours: torch.nn.Module, theirs: torch.nn.Module) -> torch.nn.Module:
    """Copy the reference's weights into ours with strict=True (same names, same shapes)."""
    sd = theirs.state_dict()
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
           {k: tuple(v.shape) for k, v in sd.items()}
    ours.load_state_dict(sd, strict=True)
    return ours


# in_dim, in_ch, out_ch, ch, ch_mult, num_res_blocks, attn_resolutions
CONFIGS = [
    pytest.param(16, 1, 1, 32, (1,), 1, (), id="one-level-no-attn"),
    pytest.param(16, 3, 3, 32, (1, 2), 2, (16,), id="rgb-attn-top"),
    pytest.param(28, 1, 1, 32, (1, 1, 2), 1, (14,), id="fashion-attn-lower"),
    pytest.param(32, 3, 1, 32, (1, 2, 2, 2), 1, (8,), id="four-levels-attn-lower"),
    pytest.param(16, 1, 3, 64, (1, 2), 1, (8,), id="ch64-attn-lower"),
    pytest.param(28, 1, 1, 64, (1, 1, 2), 2, (14,), id="seed-config"),
]


@pytest.mark.parametrize("in_dim, in_ch, out_ch, ch, ch_mult, num_res_blocks, attn", CONFIGS)
@pytest.mark.parametrize("scaled", [False, True], ids=["Unet", "Scaled"])
def test_unet_state_dict_loads_and_matches(in_dim, in_ch, out_ch, ch, ch_mult, num_res_blocks,
                                           attn, scaled):
    kw = dict(ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks, attn_resolutions=attn)
    torch.manual_seed(0)
    theirs = (sd_model.Scaled(sd_unet.Unet) if scaled else sd_unet.Unet)(in_dim, in_ch, out_ch, **kw).eval()
    ours = (Scaled(Unet) if scaled else Unet)(in_dim, in_ch, out_ch, **kw).eval()
    with torch.no_grad():
        before = ours(torch.zeros(1, in_ch, in_dim, in_dim), torch.tensor(1.0))
    load_theirs(ours, theirs)

    x = torch.randn(3, in_ch, in_dim, in_dim)
    with torch.no_grad():
        for sigma in (torch.tensor(2.5), torch.tensor([0.02, 1.0, 15.0]).reshape(3, 1, 1, 1)):
            out, ref = ours(x, sigma), theirs(x, sigma)
            assert out.shape == ref.shape == (3, out_ch, in_dim, in_dim)
            assert rel_diff(out, ref) < RTOL
        # the weights did change: before loading, ours computed something else
        assert rel_diff(before, theirs(torch.zeros(1, in_ch, in_dim, in_dim), torch.tensor(1.0))) > 1e-2


def test_our_state_dict_loads_into_theirs():
    torch.manual_seed(1)
    ours = Scaled(Unet)(16, 1, 1, ch=32, ch_mult=(1, 2), attn_resolutions=(8,)).eval()
    theirs = sd_model.Scaled(sd_unet.Unet)(16, 1, 1, ch=32, ch_mult=(1, 2), attn_resolutions=(8,)).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x, sigma = torch.randn(2, 1, 16, 16), torch.tensor(0.7)
    with torch.no_grad():
        assert rel_diff(ours(x, sigma), theirs(x, sigma)) < RTOL


def conditional_pair(num_classes=10, dropout_prob=0.1):
    kw = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,))
    torch.manual_seed(2)
    theirs = sd_model.Scaled(sd_unet.Unet)(
        16, 1, 1, **kw, cond_embed=sd_model.CondEmbedderLabel(32 * 4, num_classes, dropout_prob))
    ours = Scaled(Unet)(16, 1, 1, **kw, cond_embed=CondEmbedderLabel(32 * 4, num_classes, dropout_prob))
    return load_theirs(ours, theirs), theirs


def test_conditional_unet_matches():
    ours, theirs = conditional_pair()
    ours.eval(), theirs.eval()
    x, sigma = torch.randn(4, 1, 16, 16), torch.tensor(3.0)
    labels = torch.tensor([0, 3, 9, 10])    # 10 is the null class
    with torch.no_grad():
        out, ref = ours(x, sigma, cond=labels), theirs(x, sigma, cond=labels)
        assert rel_diff(out, ref) < RTOL
        # the label matters: another label gives another output
        assert rel_diff(ours(x, sigma, cond=labels.flip(0)), ref) > 1e-3
        # classifier-free guidance as in the reference
        assert rel_diff(ours.predict_eps_cfg(x, sigma, labels, 2.0),
                        theirs.predict_eps_cfg(x, sigma, labels, 2.0)) < RTOL


@pytest.mark.parametrize("dropout_prob", [0.0, 0.5])
def test_train_mode_uses_the_same_random_stream(dropout_prob):
    """In train mode dropout and label dropout draw from the global generator in the
    same order as the reference (even with dropout_prob=0), so the same seed gives
    the same output."""
    ours, theirs = conditional_pair(dropout_prob=dropout_prob)
    ours.train(), theirs.train()
    x, sigma, labels = torch.randn(8, 1, 16, 16), torch.tensor(1.0), torch.arange(8)
    torch.manual_seed(5)
    out = ours(x, sigma, cond=labels)
    torch.manual_seed(5)
    ref = theirs(x, sigma, cond=labels)
    assert rel_diff(out, ref) < RTOL
    torch.manual_seed(6)
    assert rel_diff(ours(x, sigma, cond=labels), ref) > 1e-3   # another seed, other dropout


@pytest.mark.parametrize("wrapper, sd_wrapper", [(PredX0, sd_model.PredX0), (PredV, sd_model.PredV)],
                         ids=["PredX0", "PredV"])
def test_prediction_wrappers_match(wrapper, sd_wrapper):
    kw = dict(ch=32, ch_mult=(1,), num_res_blocks=1, attn_resolutions=())
    torch.manual_seed(3)
    theirs = sd_wrapper(sd_unet.Unet)(8, 1, 1, **kw).eval()
    ours = load_theirs(wrapper(Unet)(8, 1, 1, **kw).eval(), theirs)
    x0, eps = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    sigma = torch.tensor([0.5, 4.0]).reshape(2, 1, 1, 1)
    with torch.no_grad():
        assert rel_diff(ours.predict_eps(x0 + sigma * eps, sigma),
                        theirs.predict_eps(x0 + sigma * eps, sigma)) < RTOL
        assert ours.get_loss(x0, sigma, eps).item() == pytest.approx(theirs.get_loss(x0, sigma, eps).item(),
                                                                     rel=RTOL)


# --- the blocks, one by one ---------------------------------------------------------------

def same_function(ours, theirs, *inputs):
    """ours takes theirs' weights (strict) and gives the same output on inputs."""
    load_theirs(ours, theirs)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        out, ref = ours(*inputs), theirs(*inputs)
    assert out.shape == ref.shape
    assert rel_diff(out, ref) < RTOL
    return out


@pytest.mark.parametrize("in_ch, out_ch, conv_shortcut", [(32, None, False), (32, 64, False), (64, 32, True)],
                         ids=["no-shortcut", "1x1-shortcut", "3x3-conv-shortcut"])
def test_resnet_block(in_ch, out_ch, conv_shortcut):
    kw = dict(in_ch=in_ch, out_ch=out_ch, conv_shortcut=conv_shortcut, dropout=0.1, temb_channels=48)
    theirs = sd_unet.ResnetBlock(**kw)
    ours = ResnetBlock(**kw)
    if out_ch not in (None, in_ch):
        k = 3 if conv_shortcut else 1
        assert ours.shortcut.kernel_size == (k, k)
    else:
        assert not hasattr(ours, "shortcut")
    out = same_function(ours, theirs, torch.randn(2, in_ch, 6, 6), torch.randn(2, 48))
    assert out.shape == (2, out_ch or in_ch, 6, 6)


@pytest.mark.parametrize("num_heads", [1, 2])
def test_attn_block(num_heads):
    theirs, ours = sd_unet.AttnBlock(64, num_heads=num_heads), AttnBlock(64, num_heads=num_heads)
    same_function(ours, theirs, torch.randn(2, 64, 5, 4), None)


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_attention(qkv_bias):
    theirs = sd_model.Attention(head_dim=8, num_heads=4, qkv_bias=qkv_bias)
    ours = Attention(head_dim=8, num_heads=4, qkv_bias=qkv_bias)
    same_function(ours, theirs, torch.randn(3, 10, 32))


def test_sigma_embedder():
    torch.manual_seed(4)
    theirs, ours = sd_model.SigmaEmbedderSinCos(64), SigmaEmbedderSinCos(64)
    load_theirs(ours, theirs)
    with torch.no_grad():
        for sigma in (torch.tensor(0.3), torch.tensor([0.01, 1.0, 20.0])):
            assert rel_diff(ours(3, sigma), theirs(3, sigma)) < RTOL


@pytest.mark.parametrize("scaling_factor, log_scale", [(0.5, True), (2.0, True), (0.5, False)])
def test_get_sigma_embeds(scaling_factor, log_scale):
    for sigma in (torch.tensor(1.7), torch.tensor([0.01, 0.5, 3.0, 80.0])):
        out = get_sigma_embeds(4, sigma, scaling_factor, log_scale)
        ref = sd_model.get_sigma_embeds(4, sigma, scaling_factor, log_scale)
        assert out.shape == ref.shape == (4, 2)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_cond_embedder_label():
    torch.manual_seed(5)
    theirs, ours = sd_model.CondEmbedderLabel(64, 10), CondEmbedderLabel(64, 10)
    same_function(ours, theirs, torch.tensor([0, 5, 9, 10]))
    assert ours.null_cond == theirs.null_cond == 10


def test_normalize_upsample_downsample():
    x = torch.randn(2, 64, 7, 6)
    for ours, theirs in ((Normalize(64), sd_unet.Normalize(64)), (Upsample(64), sd_unet.Upsample(64)),
                         (Downsample(64), sd_unet.Downsample(64))):
        with torch.no_grad():   # GroupNorm starts at weight 1, bias 0: make its affine part matter
            for p in theirs.parameters():
                p.normal_()
        same_function(ours, theirs, x)
    assert Normalize(64).eps == sd_unet.Normalize(64).eps and Normalize(64).num_groups == 32


def test_cond_sequential():
    theirs = sd_model.CondSequential(sd_unet.ResnetBlock(in_ch=32, dropout=0.0, temb_channels=8),
                                     sd_unet.AttnBlock(32))
    ours = CondSequential(ResnetBlock(in_ch=32, dropout=0.0, temb_channels=8), AttnBlock(32))
    load_theirs(ours, theirs)
    x, temb = torch.randn(2, 32, 4, 4), torch.randn(2, 8)
    with torch.no_grad():
        assert rel_diff(ours(x, temb), theirs(x, temb)) < RTOL


def test_package_does_not_import_the_references():
    """The references are test-only oracles: smallunet's core never imports them."""
    import pathlib
    root = pathlib.Path(smallunet.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        for name in ("smalldiffusion", "diffusers"):
            assert f"import {name}" not in text and f"from {name}" not in text, (path, name)
