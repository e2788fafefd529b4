"""Deprecated: moved to ``smallunet.book.anatomy`` (this name shadowed the standard
library's ``inspect``). This module re-exports the names it held."""
from .._moved import warn_moved
from .anatomy import (SkipEvent, _out_channels, attention_maps, attention_spread,  # noqa: F401
                      flop_counts, level_table, pop_modules, push_modules, skip_ablation,
                      skip_features, skip_trace, stages, zero_skip)

warn_moved("smallunet.book.inspect", "smallunet.book.anatomy")
