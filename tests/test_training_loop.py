"""Training: a few AdamW steps on a fixed batch lower the loss, and training_loop (plain
PyTorch, on the model's device) yields its state for batches of images and of
(image, label) pairs, step for step as smalldiffusion's does."""
from itertools import islice

import pytest
import smalldiffusion as sd
import torch
from smalldiffusion import model as sd_model
from smalldiffusion import model_unet as sd_unet
from torch.utils.data import DataLoader, TensorDataset

from smallunet import (CondEmbedderLabel, PredV, PredX0, Scaled, ScheduleLogLinear, Unet,
                       generate_train_sample, training_loop)

pytestmark = pytest.mark.usefixtures("one_thread")

KW = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.0)


def images(n=16, seed=0):
    """Smooth images in [-1, 1]: a random blob per image, easy to learn."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 8), torch.linspace(-1, 1, 8), indexing="ij")
    centre = torch.rand(n, 2, 1, 1, generator=g) - 0.5
    return 2 * torch.exp(-((xx - centre[:, :1]) ** 2 + (yy - centre[:, 1:]) ** 2) * 4) - 1   # (n, 1, 8, 8)


@pytest.mark.parametrize("wrapper", [Scaled, PredX0, PredV], ids=["eps", "x0", "v"])
def test_adamw_steps_lower_the_loss_on_a_fixed_batch(wrapper):
    torch.manual_seed(0)
    model = wrapper(Unet)(8, 1, 1, **KW)
    x0 = images(8)
    x0, sigma, eps, _ = generate_train_sample(x0, ScheduleLogLinear(N=100, sigma_min=0.01, sigma_max=20))
    assert sigma.shape == (8, 1, 1, 1) and eps.shape == x0.shape
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        loss = model.get_loss(x0, sigma, eps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    final = model.get_loss(x0, sigma, eps).item()
    assert final < 0.9 * losses[0], losses + [final]


def test_training_loop_over_a_loader_of_tensors():
    torch.manual_seed(0)
    model = Scaled(Unet)(8, 1, 1, **KW)
    loader = DataLoader(images(16), batch_size=4, shuffle=True)
    schedule = ScheduleLogLinear(N=100, sigma_min=0.01, sigma_max=20)
    before = [p.detach().clone() for p in model.parameters()]
    states = list(training_loop(loader, model, schedule, epochs=2, lr=1e-3))
    assert len(states) == 2 * len(loader) == 8
    assert [s.epoch for s in states] == [0] * 4 + [1] * 4
    for s in states:
        assert s.loss.dim() == 0 and s.loss.requires_grad and torch.isfinite(s.loss)
        assert s.x0.shape == s.eps.shape == (4, 1, 8, 8) and s.sigma.shape == (4, 1, 1, 1)
        assert torch.isin(s.sigma.flatten(), schedule.sigmas).all() and s.cond is None
        assert s.model is model and isinstance(s.optimizer, torch.optim.AdamW)
        assert s.x0.device == next(model.parameters()).device
    assert model.training
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))   # every weight moved


def test_training_loop_with_tensor_dataset():
    """TensorDataset(images) gives 1-item lists; they are unwrapped."""
    model = Scaled(Unet)(8, 1, 1, **KW)
    loader = DataLoader(TensorDataset(images(8)), batch_size=4)
    (s,) = islice(training_loop(loader, model, ScheduleLogLinear(N=10)), 1)
    assert s.x0.shape == (4, 1, 8, 8)


def test_training_loop_conditional_pairs():
    torch.manual_seed(0)
    model = Scaled(Unet)(8, 1, 1, **KW, cond_embed=CondEmbedderLabel(128, num_classes=3))
    labels = torch.arange(12) % 3
    loader = DataLoader(TensorDataset(images(12), labels), batch_size=4)
    states = list(training_loop(loader, model, ScheduleLogLinear(N=10), epochs=1, conditional=True))
    assert len(states) == 3
    for i, s in enumerate(states):
        assert torch.equal(s.cond, labels[4 * i:4 * i + 4]) and torch.isfinite(s.loss)
    assert model.cond_embed.embeddings.weight.grad is not None   # the labels reach the loss


def test_training_loop_lowers_the_loss():
    """Over 60 steps (15 epochs of 4 batches) the loss of the last epochs is lower than
    of the first ones."""
    torch.manual_seed(0)
    model = Scaled(Unet)(8, 1, 1, **KW)
    loader = DataLoader(images(16), batch_size=4, shuffle=True)
    losses = [s.loss.item() for s in training_loop(loader, model, ScheduleLogLinear(N=100, sigma_min=0.01,
                                                                                       sigma_max=20),
                                                   epochs=15, lr=2e-3)]
    assert sum(losses[-12:]) < 0.8 * sum(losses[:12]), losses


@pytest.mark.parametrize("conditional", [False, True])
def test_training_loop_equals_smalldiffusion(conditional):
    """The same seed gives the same sigmas, noise, losses and updates as smalldiffusion's
    loop (which runs through accelerate)."""
    torch.manual_seed(0)
    make = lambda cls, emb: cls(8, 1, 1, **KW, cond_embed=emb(128, 3) if conditional else None)  # noqa: E731
    theirs = make(sd_model.Scaled(sd_unet.Unet), sd_model.CondEmbedderLabel)
    ours = make(Scaled(Unet), CondEmbedderLabel)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    data = images(12)
    dataset = TensorDataset(data, torch.arange(12) % 3) if conditional else data
    torch.manual_seed(1)
    got = [s.loss.item() for s in islice(training_loop(DataLoader(dataset, batch_size=4), ours,
                                                       ScheduleLogLinear(N=100), conditional=conditional), 5)]
    torch.manual_seed(1)
    ref = [s.loss.item() for s in islice(sd.training_loop(DataLoader(dataset, batch_size=4), theirs,
                                                          sd.ScheduleLogLinear(N=100), conditional=conditional), 5)]
    assert got == pytest.approx(ref, rel=1e-5)


def test_generate_train_sample_with_generator():
    schedule = ScheduleLogLinear(N=100)
    x0 = images(6)
    a = generate_train_sample(x0, schedule, generator=torch.Generator().manual_seed(0))
    b = generate_train_sample(x0, schedule, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(p, q) for p, q in zip(a[:3], b[:3]))
    assert a[1].shape == (6, 1, 1, 1) and torch.isin(a[1].flatten(), schedule.sigmas).all()
    x, sigma, eps, cond = generate_train_sample((x0, torch.arange(6)), schedule, conditional=True)
    assert torch.equal(cond, torch.arange(6)) and x is x0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_training_loop_moves_batches_to_the_model_device():
    model = Scaled(Unet)(8, 1, 1, **KW).cuda()
    (s,) = islice(training_loop(DataLoader(images(4), batch_size=4), model, ScheduleLogLinear(N=10)), 1)
    assert s.x0.device.type == "cuda" and s.loss.device.type == "cuda"
