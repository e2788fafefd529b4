"""Embeddings of the noise level sigma and of class labels.

The U-Net is told how noisy its input is through a vector of ``temb_ch`` numbers
that every ResnetBlock adds to its feature maps. It is made from log(sigma): the
noise levels span three decades (0.01 to 20), and on a log scale equal ratios of
noise get equal steps in the embedding.
"""
from __future__ import annotations

import torch
from torch import nn

from ._checks import check_float, check_int, check_sigma, check_tensor


def get_sigma_embeds(batches: int, sigma: torch.Tensor,
                     scaling_factor: float = 0.5,
                     log_scale: bool = True) -> torch.Tensor:
    """[sin(s), cos(s)] with s = scaling_factor * log(sigma), one row per
    example.

    ``sigma`` holds one value (used for the whole batch) or ``batches``
    values. Returns (B, 2).
    """
    check_int("batches", batches, minimum=1)
    sigma = check_sigma(sigma, batches)
    if sigma.numel() == 1:
        sigma = sigma.reshape(-1).expand(batches)
    else:
        sigma = sigma.reshape(batches)
    if log_scale:
        sigma = torch.log(sigma)
    s = sigma.unsqueeze(1) * scaling_factor                       # (B, 1)
    return torch.cat([torch.sin(s), torch.cos(s)], dim=1)         # (B, 2)


class SigmaEmbedderSinCos(nn.Module):
    """sigma -> [sin, cos] of its log -> two-layer MLP -> (B, hidden_size).

    Two numbers, where DDPM's embedding of the time step has 128 (sines
    and cosines at 64 frequencies): the MLP turns them into whatever
    features of log(sigma) the network learns to need (smalldiffusion's
    design).
    """

    def __init__(self, hidden_size: int, scaling_factor: float = 0.5,
                 log_scale: bool = True):
        super().__init__()
        check_int("hidden_size", hidden_size, minimum=1)
        self.scaling_factor = check_float("scaling_factor", scaling_factor)
        self.log_scale = bool(log_scale)
        self.mlp = nn.Sequential(
            nn.Linear(2, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )

    def forward(self, batches: int, sigma: torch.Tensor) -> torch.Tensor:
        """(batches, sigma with 1 or B values) -> (B, hidden_size)"""
        sig_embed = get_sigma_embeds(batches, sigma, self.scaling_factor,
                                     self.log_scale)             # (B, 2)
        return self.mlp(sig_embed.to(self.mlp[0].weight.dtype))  # (B, D)


class CondEmbedderLabel(nn.Module):
    """Class label -> (B, hidden_size), with one extra "null" class for
    classifier-free guidance.

    Labels are integers in [0, num_classes); the null class is ``num_classes``.
    While training, each label is replaced by the null class with probability
    ``dropout_prob``, so the same network also learns the unconditional model.
    """

    def __init__(self, hidden_size: int, num_classes: int, dropout_prob: float = 0.1):
        super().__init__()
        check_int("hidden_size", hidden_size, minimum=1)
        check_int("num_classes", num_classes, minimum=1)
        self.dropout_prob = check_float("dropout_prob", dropout_prob, low=0.0, high=1.0)
        self.embeddings = nn.Embedding(num_classes + 1, hidden_size)
        self.mlp = nn.Sequential(
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        self.num_classes = num_classes
        self.null_cond = num_classes

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """(B,) integer labels -> (B, hidden_size)"""
        _check_labels(labels, self.num_classes)
        if self.training:  # drawn even when dropout_prob == 0: the
            # same random stream as smalldiffusion's
            drop = torch.rand(labels.shape[0], device=labels.device)
            drop = drop < self.dropout_prob    # these: the null class
            labels = torch.where(drop, self.null_cond, labels)
        return self.mlp(self.embeddings(labels))


# --- the checks, one call away from the embeddings above -------------------------------------
def _check_labels(labels, num_classes: int) -> None:
    """Labels are a 1-D integer tensor (B,) in [0, num_classes] (num_classes: the null
    class)."""
    check_tensor("labels", labels)
    if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be a 1-D integer tensor (B,), got dtype {labels.dtype} "
                         f"and shape {tuple(labels.shape)}")
    # The range is read (two host syncs) only for labels on the CPU and outside
    # torch.compile; on an accelerator the entry points (samples, Trainer) check it once.
    if (labels.device.type == "cpu" and not torch.compiler.is_compiling() and labels.numel()
            and (int(labels.min()) < 0 or int(labels.max()) > num_classes)):
        raise ValueError(f"labels must be in [0, {num_classes}] ({num_classes} is the "
                         f"null class), got values from {int(labels.min())} to {int(labels.max())}")
