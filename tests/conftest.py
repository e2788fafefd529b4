"""Shared fixtures for the tests of the package's core."""
import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one CPU thread (a training run may share the machine),
    and restore the thread count afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """The book, built once per test session from the outputs stored in the notebooks
    (``jupyter-book build -W -n --keep-going`` into a temporary folder, so the working
    tree's _build/html is left alone; the live sampler's ONNX export is cached in
    _build/onnx/), shared by the build test and the browser tests.
    Returns (returncode, log, html folder); skips when jupyter-book is not installed."""
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("jupyter-book") is None:
        pytest.skip("jupyter-book is not installed")
    root = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("book")
    build = subprocess.run(["jupyter-book", "build", "-W", "-n", "--keep-going", str(root), "--path-output", str(out)],
                           capture_output=True, text=True, timeout=900)
    return build.returncode, build.stdout[-4000:] + build.stderr[-4000:], out / "_build" / "html"
