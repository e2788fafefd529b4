"""Deprecated: FastDropout moved to ``smallunet.cpu_speedups``, with the other CPU speed
trick (explicit attention). This module re-exports the names it held."""
from ._moved import warn_moved
from .cpu_speedups import BITS, FastDropout, effective_p, keep_mask, use_fast_dropout  # noqa: F401

warn_moved("smallunet.dropout", "smallunet.cpu_speedups")
