"""Old module paths that moved: each alias module re-exports its names from their new
homes and, when first imported, warns once with a DeprecationWarning that names them."""
from __future__ import annotations

import warnings


def warn_moved(old: str, new: str) -> None:
    """Warn, from an alias module's body, that ``old`` moved to ``new``. The warning
    points at the line that imported the alias: stacklevel 3 is the alias's importer,
    and ``warnings`` itself skips the import machinery's frames."""
    warnings.warn(f"{old} has moved: import from {new} instead ({old} will be removed)",
                  DeprecationWarning, stacklevel=3)
