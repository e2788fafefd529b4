"""Shapes over a small grid of settings, and each component against a closed form:
the sigma embedding, attention, GroupNorm's independence of the batch, resampling,
and the wrappers Scaled, PredX0 and PredV."""
import math

import pytest
import torch
from torch import nn

from smallunet import (Attention, AttnBlock, CondEmbedderLabel, Downsample, ModelMixin, Normalize,
                       PredV, PredX0, ResnetBlock, Scaled, SigmaEmbedderSinCos, Unet, Upsample,
                       alpha, get_sigma_embeds)

pytestmark = pytest.mark.usefixtures("one_thread")


# --- the Unet over a grid of settings -------------------------------------------------------

@pytest.mark.parametrize("in_dim, in_ch, out_ch, ch_mult, num_res_blocks, attn", [
    (8, 1, 1, (1,), 1, ()),
    (8, 3, 3, (1, 2), 1, (8,)),
    (12, 2, 5, (1, 1, 2), 2, (3,)),
    (16, 1, 1, (1, 2, 2, 2), 1, (2, 16)),
    (28, 1, 1, (1, 1, 2), 1, (14,)),
])
def test_unet_shapes(in_dim, in_ch, out_ch, ch_mult, num_res_blocks, attn):
    model = Unet(in_dim, in_ch, out_ch, ch=32, ch_mult=ch_mult, num_res_blocks=num_res_blocks,
                 attn_resolutions=attn).eval()
    assert model.input_dims == (in_ch, in_dim, in_dim)
    assert model.temb_ch == 32 * 4
    # an AttnBlock after every ResnetBlock at the listed resolutions, plus one in the middle
    n_attn = sum(isinstance(m, AttnBlock) for m in model.modules())
    levels = [in_dim // 2 ** i for i in range(len(ch_mult))]
    assert n_attn == 1 + sum((2 * num_res_blocks + 1) for r in levels if r in attn)
    with torch.no_grad():
        for B, sigma in ((1, torch.tensor(1.0)), (3, torch.tensor([0.1, 1.0, 10.0]))):
            out = model(torch.randn(B, in_ch, in_dim, in_dim), sigma)
            assert out.shape == (B, out_ch, in_dim, in_dim)
            assert torch.isfinite(out).all()
    assert model.rand_input(4).shape == (4, in_ch, in_dim, in_dim)


def test_unet_sigma_shapes_agree():
    """One sigma for the batch, or one per example as (B,), (B, 1, 1, 1) or B times the same."""
    torch.manual_seed(0)
    model = Scaled(Unet)(8, 1, 1, ch=32, ch_mult=(1, 2), attn_resolutions=()).eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        ref = model(x, torch.tensor(2.0))
        for sigma in (torch.tensor([2.0]), torch.full((3,), 2.0), torch.full((3, 1, 1, 1), 2.0)):
            torch.testing.assert_close(model(x, sigma), ref)
        per = model(x, torch.tensor([0.1, 2.0, 9.0]))
        torch.testing.assert_close(per, model(x, torch.tensor([0.1, 2.0, 9.0]).reshape(3, 1, 1, 1)))
        # example i only sees sigma[i]
        torch.testing.assert_close(per[1:2], model(x[1:2], torch.tensor(2.0)), rtol=1e-5, atol=1e-6)


def test_examples_do_not_interact():
    """GroupNorm (unlike BatchNorm) normalises each image on its own, so an example's
    output does not depend on its batch-mates, in train mode too (without dropout)."""
    torch.manual_seed(0)
    model = Unet(8, 1, 1, ch=32, ch_mult=(1, 2), attn_resolutions=(4,), dropout=0.0).train()
    x = torch.randn(4, 1, 8, 8)
    sigma = torch.tensor([0.5, 1.0, 2.0, 4.0])
    with torch.no_grad():
        full = model(x, sigma)
        alone = torch.cat([model(x[i:i + 1], sigma[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(full, alone, rtol=1e-4, atol=1e-5)


def test_conditional_unet_shapes_and_labels_matter():
    # ch=64 under GroupNorm(32): two channels per group. With ch=32 every channel is its own
    # group, so the GroupNorm after the embedding is added removes the label's per-channel
    # offset entirely and the label changes the output by ~5e-7 (a pass or a fail by rounding).
    torch.manual_seed(0)
    model = Unet(8, 1, 1, ch=64, ch_mult=(1,), attn_resolutions=(),
                 cond_embed=CondEmbedderLabel(256, num_classes=3)).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        a = model(x, torch.tensor(1.0), cond=torch.tensor([0, 1]))
        b = model(x, torch.tensor(1.0), cond=torch.tensor([2, 1]))
    assert a.shape == (2, 1, 8, 8)
    # another label moves the output by a margin (measured: 0.32 against a mean |output| of
    # 0.25), the same label in the other row leaves it as it was
    assert (a[0] - b[0]).abs().max() > 0.05 * a.abs().mean()
    torch.testing.assert_close(a[1], b[1])


# --- the blocks against closed forms -------------------------------------------------------

def test_get_sigma_embeds_closed_form():
    sigma = torch.tensor([0.01, 0.3, 1.0, 20.0])
    emb = get_sigma_embeds(4, sigma)
    s = 0.5 * torch.log(sigma)
    torch.testing.assert_close(emb, torch.stack([torch.sin(s), torch.cos(s)], dim=1))
    # one sigma is repeated for the whole batch; sin^2 + cos^2 = 1
    one = get_sigma_embeds(3, torch.tensor(0.3))
    assert one.shape == (3, 2) and torch.equal(one[0], one[2])
    torch.testing.assert_close(one.pow(2).sum(1), torch.ones(3))
    # without the log
    torch.testing.assert_close(get_sigma_embeds(1, torch.tensor(2.0), 1.0, log_scale=False),
                               torch.tensor([[math.sin(2.0), math.cos(2.0)]]))


def test_sigma_embedder_shape():
    emb = SigmaEmbedderSinCos(48)
    assert emb(5, torch.tensor(1.0)).shape == (5, 48)
    assert emb(5, torch.rand(5) + 0.1).shape == (5, 48)


@pytest.mark.parametrize("num_heads, head_dim", [(1, 32), (4, 8)])
def test_attention_closed_form(num_heads, head_dim):
    """softmax(q k^T / sqrt(d)) v per head, written out with plain matrix products."""
    torch.manual_seed(0)
    attn = Attention(head_dim=head_dim, num_heads=num_heads)
    D = num_heads * head_dim
    x = torch.randn(2, 6, D)
    q, k, v = attn.qkv(x).split(D, dim=-1)                               # (B, N, D) each
    heads = lambda t: t.reshape(2, 6, num_heads, head_dim).transpose(1, 2)  # noqa: E731
    q, k, v = heads(q), heads(k), heads(v)                               # (B, h, N, d)
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(head_dim), dim=-1)
    ref = attn.proj((w @ v).transpose(1, 2).reshape(2, 6, D))
    torch.testing.assert_close(attn(x), ref, rtol=1e-5, atol=1e-5)
    weights = attn.attention_weights(x)
    assert weights.shape == (2, num_heads, 6, 6)
    torch.testing.assert_close(weights, w)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, num_heads, 6))


@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_attn_block_shapes_and_residual(num_heads):
    block = AttnBlock(64, num_heads=num_heads)
    x = torch.randn(2, 64, 3, 5)
    assert block(x).shape == (2, 64, 3, 5)
    assert block.attention_map(x).shape == (2, num_heads, 15, 15)
    nn.init.zeros_(block.proj_out.weight), nn.init.zeros_(block.proj_out.bias)
    torch.testing.assert_close(block(x), x)        # a zero projection leaves only the residual


def test_resnet_block_shapes_and_temb():
    block = ResnetBlock(in_ch=32, out_ch=64, dropout=0.0, temb_channels=16).eval()
    x = torch.randn(3, 32, 5, 5)
    temb = torch.randn(3, 16)
    out = block(x, temb)
    assert out.shape == (3, 64, 5, 5)
    assert not torch.allclose(out, block(x, temb + 1))   # the embedding reaches the output
    assert block(x, temb[:1]).shape == (3, 64, 5, 5)   # one temb for the whole batch


def test_normalize_is_groupnorm_32():
    norm = Normalize(64)
    x = torch.randn(2, 64, 4, 4) * 5 + 3
    y = norm(x)
    g = y.reshape(2, 32, -1)                    # 2 channels * 16 pixels per group
    torch.testing.assert_close(g.mean(-1), torch.zeros(2, 32), atol=1e-5, rtol=0)
    torch.testing.assert_close(g.var(-1, unbiased=False), torch.ones(2, 32), atol=1e-3, rtol=0)


@pytest.mark.parametrize("size, down", [(8, 4), (7, 3), (28, 14), (1, 0)])
def test_resample_sizes(size, down):
    x = torch.randn(1, 32, size, size)
    assert Upsample(32)(x).shape == (1, 32, 2 * size, 2 * size)
    if down:
        assert Downsample(32)(x).shape == (1, 32, down, down)


def test_downsample_pads_right_and_bottom():
    """The padding is one row at the bottom and one column at the right: a 3x3 stride-2
    convolution of ones over a 4x4 image of ones sees 9 pixels at the top left and
    4 (the rest is padding) at the bottom right."""
    down = Downsample(32)
    conv = down[1]
    nn.init.ones_(conv.weight), nn.init.zeros_(conv.bias)
    out = down(torch.ones(1, 32, 4, 4))[0, 0]
    torch.testing.assert_close(out, torch.tensor([[9., 6.], [6., 4.]]) * 32)


# --- the wrappers --------------------------------------------------------------------------

class Oracle(nn.Module, ModelMixin):
    """Returns a fixed tensor whatever it is asked: a perfect predictor of that tensor."""

    def __init__(self, answer):
        super().__init__()
        self.answer = answer
        self.input_dims = tuple(answer.shape[1:])

    def forward(self, x, sigma, cond=None):
        return self.answer


def test_pred_x0_inverts():
    torch.manual_seed(0)
    x0, eps = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    sigma = torch.tensor([0.1, 1.0, 10.0])
    xt = x0 + sigma.reshape(3, 1, 1, 1) * eps
    model = PredX0(Oracle)(x0)
    for s in (sigma, sigma.reshape(3, 1, 1, 1)):
        torch.testing.assert_close(model.predict_eps(xt, s), eps, rtol=1e-4, atol=1e-5)
        assert model.get_loss(x0, s.reshape(3, 1, 1, 1), eps).item() == 0.0
    assert PredX0(Oracle)(x0 + 1).get_loss(x0, sigma.reshape(3, 1, 1, 1), eps).item() == pytest.approx(1.0)


def test_pred_v_inverts():
    torch.manual_seed(0)
    x0, eps = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    sigma = torch.tensor([0.1, 1.0, 10.0]).reshape(3, 1, 1, 1)
    a = 1 / (1 + sigma ** 2)
    v = a.sqrt() * eps - (1 - a).sqrt() * x0           # Salimans and Ho's v, in sigma terms
    model = PredV(Oracle)(v)
    torch.testing.assert_close(model.predict_eps(x0 + sigma * eps, sigma), eps, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.predict_eps(x0 + sigma * eps, sigma.reshape(3)), eps, rtol=1e-4, atol=1e-5)
    assert model.get_loss(x0, sigma, eps).item() == pytest.approx(0.0, abs=1e-12)


def test_eps_model_loss_and_predict_eps():
    torch.manual_seed(0)
    x0, eps = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    model = Oracle(eps)
    assert torch.equal(model.predict_eps(x0, torch.tensor(1.0)), eps)
    assert model.get_loss(x0, torch.tensor(1.0), eps).item() == 0.0
    assert Oracle(eps + 2).get_loss(x0, torch.tensor(1.0), eps).item() == pytest.approx(4.0)


def test_scaled_feeds_sqrt_alpha_x():
    torch.manual_seed(0)
    plain = Unet(8, 1, 1, ch=32, ch_mult=(1,), attn_resolutions=()).eval()
    scaled = Scaled(Unet)(8, 1, 1, ch=32, ch_mult=(1,), attn_resolutions=()).eval()
    scaled.load_state_dict(plain.state_dict())
    assert type(scaled).__name__ == "UnetScaled" and isinstance(scaled, Unet)
    x = torch.randn(2, 1, 8, 8) * 5
    sigma = torch.tensor([0.5, 5.0])
    with torch.no_grad():
        torch.testing.assert_close(scaled(x, sigma), plain(x / (1 + sigma.reshape(2, 1, 1, 1) ** 2).sqrt(), sigma))
        # a float64 sigma does not turn x into float64
        assert scaled(x, sigma.double()).dtype == torch.float32
    torch.testing.assert_close(alpha(torch.tensor(3.0)), torch.tensor(0.1))


def test_attention_picks_the_explicit_form_only_for_bf16_on_the_cpu_and_short_sequences():
    from smallunet.attention import EXPLICIT_MAX_TOKENS, use_explicit_attention
    q = torch.zeros(2, 1, 196, 8)
    assert use_explicit_attention(q.bfloat16())
    assert not use_explicit_attention(q)                                   # fp32: the fused kernel
    assert not use_explicit_attention(torch.zeros(1, 1, EXPLICIT_MAX_TOKENS + 1, 8, dtype=torch.bfloat16))
    assert use_explicit_attention(torch.zeros(1, 1, EXPLICIT_MAX_TOKENS, 8, dtype=torch.bfloat16))


@pytest.mark.parametrize("tokens", [49, 196, 1100])
def test_attention_forms_agree_in_bf16_forward_and_backward(tokens):
    """Under bf16 autocast on the CPU, Attention (explicit up to EXPLICIT_MAX_TOKENS tokens)
    gives what the fused kernel gives, and so do the gradients."""
    torch.manual_seed(0)
    attn = Attention(head_dim=32, num_heads=2)
    x = torch.randn(3, tokens, 64)

    def run(force_fused):
        x1 = x.clone().requires_grad_(True)
        attn.zero_grad()
        with torch.autocast("cpu", torch.bfloat16):
            if force_fused:
                q, k, v = attn.qkv_heads(x1)
                out = attn.proj(torch.nn.functional.scaled_dot_product_attention(q, k, v)
                                .transpose(1, 2).reshape(3, tokens, 64))
            else:
                out = attn(x1)
        out.float().pow(2).sum().backward()
        return out.float(), x1.grad, attn.qkv.weight.grad.clone()

    for a, b in zip(run(False), run(True)):
        torch.testing.assert_close(a, b, rtol=3e-2, atol=3e-2)


def test_label_embedding_reads_no_value_off_an_accelerator_or_under_compile():
    """The label range is checked on the CPU (a clear ValueError), but never by reading
    values back from another device (two host syncs per GPU step) or inside torch.compile
    (a graph break): the entry points (samples, Trainer) check labels there, once."""
    emb = CondEmbedderLabel(16, num_classes=3).eval()
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\]"):
        emb(torch.tensor([0, 4]))
    # 'meta' stands in for an accelerator: reading a value off it fails, shapes still flow
    out = emb.to("meta")(torch.tensor([0, 2], device="meta"))
    assert out.shape == (2, 16) and out.device.type == "meta"
    # fullgraph=True fails on any graph break, such as int(labels.max())
    compiled = torch.compile(CondEmbedderLabel(16, num_classes=3).eval(), backend="eager", fullgraph=True)
    assert compiled(torch.tensor([0, 1, 3])).shape == (3, 16)
