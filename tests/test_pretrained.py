"""The shipped checkpoint: recorded hash, offline loading, refusal of a damaged file."""
import shutil

import pytest
import torch

from smallunet import ScheduleLogLinear, samples
from smallunet.checkpoint import sha256_of
from smallunet.pretrained import WEIGHTS_DIR, load_pretrained, pretrained_info


def test_manifest_hash_matches_the_shipped_file():
    info = pretrained_info()
    path = WEIGHTS_DIR / info["file"]
    assert sha256_of(path) == info["sha256"]
    assert path.stat().st_size == info["bytes"]
    assert path.stat().st_size < 20 * 2**20          # small enough for git


def test_load_pretrained_is_the_seed_model_in_eval_mode_on_cpu():
    model = load_pretrained()
    assert not model.training
    assert type(model).__name__ == "UnetScaled"
    assert (model.in_dim, model.ch, model.ch_mult, model.attn_resolutions) == (28, 64, (1, 1, 2), (14,))
    assert next(model.parameters()).device.type == "cpu"
    torch.manual_seed(0)
    sigmas = ScheduleLogLinear(sigma_min=0.01, sigma_max=20, N=800).sample_sigmas(2)
    *_, x0 = samples(model, sigmas, gam=1.6, batchsize=2)
    assert x0.shape == (2, 1, 28, 28) and torch.isfinite(x0).all()


def test_tampered_file_is_refused(tmp_path):
    info = pretrained_info()
    bad = tmp_path / "tampered.safetensors"
    shutil.copy(WEIGHTS_DIR / info["file"], bad)
    raw = bytearray(bad.read_bytes())
    raw[-100] ^= 0xFF                                 # flip one byte of one weight
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=f"expected {info['sha256']}"):
        load_pretrained(bad, sha256=info["sha256"])


def test_truncated_file_is_refused(tmp_path):
    info = pretrained_info()
    cut = tmp_path / "truncated.safetensors"
    cut.write_bytes((WEIGHTS_DIR / info["file"]).read_bytes()[:1000])
    with pytest.raises(ValueError, match="changed, truncated or replaced"):
        load_pretrained(cut, sha256=info["sha256"])
    # without a hash to compare, the safetensors parser still refuses it clearly
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_pretrained(cut, sha256=None)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_pretrained(tmp_path / "nothing.safetensors")


def test_the_conditional_checkpoint_loads_by_name_and_records_its_origin():
    info = pretrained_info("unet_fashion_cond")
    assert sha256_of(WEIGHTS_DIR / info["file"]) == info["sha256"]
    model = load_pretrained(name="unet_fashion_cond")
    assert type(model).__name__ == "UnetScaled" and model.cond_embed.num_classes == 10
    assert (model.ch, model.ch_mult, model.attn_resolutions) == (64, (1, 1, 2), (14,))
    assert info["config"]["num_classes"] == 10 and info["recommended_cfg_scale"] >= 0
    origin = info["initialised_from"]
    assert origin["name"] == "unet_fashion" and origin["step"] == info["segments"][0]["start_step"]
    sigmas = ScheduleLogLinear(sigma_min=0.01, sigma_max=20, N=800).sample_sigmas(2)
    *_, x0 = samples(model, sigmas, gam=1.6, batchsize=2, cond=torch.tensor([1, 7]),
                     cfg_scale=info["recommended_cfg_scale"], generator=torch.Generator().manual_seed(0))
    assert x0.shape == (2, 1, 28, 28) and torch.isfinite(x0).all()
    with pytest.raises(ValueError, match="has no raw weights"):
        load_pretrained(name="unet_fashion_cond", weights="model")
    with pytest.raises(FileNotFoundError, match="no pretrained checkpoint named 'unet_fashion_kond'"):
        load_pretrained(name="unet_fashion_kond")
