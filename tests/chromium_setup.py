"""What the two browser suites (test_browser.py, test_live_sampler.py) share: Debian's
Chromium driven by Playwright, offline, and the one console error the theme is allowed."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("SMALLUNET_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
# the theme's own error on every page when launch buttons are on (upstream's, harmless)
ALLOWED_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)


def require_browser():
    """Playwright's sync API, or skip the calling test module when it or Chromium is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"chromium is not installed ({CHROMIUM}; apt-get install chromium)", allow_module_level=True)
    return sync_api
