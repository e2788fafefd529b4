"""The book builds with -W (warnings are errors) and its HTML has no broken image or link.

The build (the session fixture ``built_book`` in conftest.py) uses the outputs stored in
the notebooks (execute_notebooks: off) and a temporary folder, so the working tree's
_build is left alone; tests/test_browser.py reads the same build."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_book_builds_without_warnings_and_links_resolve(built_book):
    returncode, log, html = built_book
    assert returncode == 0, log
    assert (html / "index.html").exists()
    for page in ("chapters/01_normalize.html", "chapters/06_unet.html", "chapters/08_sampling.html"):
        assert (html / page).exists(), page
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_html.py"), str(html)],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-4000:]
