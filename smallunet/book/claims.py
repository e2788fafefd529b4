"""Claims the book's text makes, checked by the cell beside them.

    check("DDPM beats DDIM at 20 steps", fid["DDPM"][20] < fid["DDIM"][20],
          f"FID {fid['DDPM'][20]:.1f} vs {fid['DDIM'][20]:.1f}")

prints ``✓ DDPM beats DDIM at 20 steps (FID 81.4 vs 117.1)`` for the reader — on the
rendered page, on Colab and in Jupyter alike — and raises ``ClaimFailed`` when the
claim stops holding, so that re-executing a chapter with another model (nbval in CI)
fails instead of leaving the prose behind its outputs. ``number`` prints a value that
the prose quotes, next to the sentence that quotes it.
"""
from __future__ import annotations


class ClaimFailed(AssertionError):
    """A sentence of the book no longer agrees with what its cell computed."""


def check(claim: str, holds, evidence: str = "") -> bool:
    """Print ``✓ claim (evidence)``, or raise ClaimFailed naming the claim and the evidence."""
    if not isinstance(claim, str) or not claim:
        raise TypeError(f"claim must be a non-empty str, got {claim!r}")
    ok = bool(holds)
    suffix = f" ({evidence})" if evidence else ""
    if not ok:
        raise ClaimFailed(f"the text claims: {claim!r}, but the outputs say otherwise{suffix}. "
                          f"Update the text (and this check) to what the outputs show.")
    print(f"✓ {claim}{suffix}")
    return ok


def number(name: str, value, fmt: str = "") -> str:
    """Print ``name = value`` (formatted with ``fmt``) for prose that quotes it; returns the text."""
    text = f"{value:{fmt}}" if fmt else str(value)
    print(f"{name} = {text}")
    return text
