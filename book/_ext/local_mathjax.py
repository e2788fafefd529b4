"""A Sphinx extension: serve MathJax from the built book itself, so that the math
renders offline (a saved copy, file:// URLs, a browser test with no network).

It copies MathJax 3.2.2's single-file component ``tex-svg-full.js`` (every TeX package
in one file, SVG output: no web fonts to fetch) from the PyPI package
``django-static-mathjax`` (static files only, no dependencies; in requirements.txt) to
``_static/mathjax/`` of the build and points Sphinx's ``mathjax_path`` at it. Without
that package, the book keeps Sphinx's default, MathJax from a CDN.

Enabled in _config.yml: ``sphinx: local_extensions: {local_mathjax: book/_ext}``.
"""
from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)
DISTRIBUTION = "django-static-mathjax"
COMPONENT = "tex-svg-full.js"
TARGET = f"mathjax/{COMPONENT}"           # relative to _static


def mathjax_file() -> Path | None:
    """The installed tex-svg-full.js, or None when the package is missing."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file(f"mathjax/static/mathjax/es5/{COMPONENT}"))
    return path if path.is_file() else None


def use_local_copy(app, config) -> None:
    source = mathjax_file()
    app.env_local_mathjax = source
    if source is None:
        logger.info(f"local_mathjax: {DISTRIBUTION} is not installed; MathJax comes from its CDN")
        return
    config.mathjax_path = TARGET


def copy_into_build(app, exception) -> None:
    source = getattr(app, "env_local_mathjax", None)
    if exception is not None or source is None or app.builder.format != "html":
        return
    dest = Path(app.outdir) / "_static" / TARGET
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, dest)


def setup(app):
    app.connect("config-inited", use_local_copy)
    app.connect("build-finished", copy_into_build)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
