"""The book builds with -W (warnings are errors) and its HTML has no broken image or link.

It builds from the outputs stored in the notebooks (execute_notebooks: off), into a
temporary folder, so the working tree's _build is left alone."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("jupyter-book") is None, reason="jupyter-book is not installed")
def test_book_builds_without_warnings_and_links_resolve(tmp_path):
    build = subprocess.run(
        ["jupyter-book", "build", "-W", "-n", "--keep-going", str(ROOT), "--path-output", str(tmp_path)],
        capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, (build.stdout[-4000:] + build.stderr[-4000:])
    html = tmp_path / "_build" / "html"
    assert (html / "index.html").exists()
    for page in ("chapters/01_normalize.html", "chapters/06_unet.html", "chapters/08_sampling.html"):
        assert (html / page).exists(), page
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_html.py"), str(html)],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-4000:]
