"""Re-execute the book's notebooks in place, so that the outputs committed with them
(and shown by the rendered book, which does not execute anything) are current.

    python scripts/execute_notebooks.py                         # chapters/*.ipynb and book/*.ipynb
    python scripts/execute_notebooks.py chapters/01_normalize.ipynb
    python scripts/execute_notebooks.py --timeout 900 --threads 2 chapters/0[1-3]*.ipynb

Each notebook runs top to bottom in a fresh ``python3`` kernel whose working
directory is the notebook's folder, with matplotlib's inline backend (so figures
are stored as PNGs in the outputs) and widget state saved (so ipywidgets render in
the HTML), except when every widget sits in a cell that the book hides. A notebook is
written back only when every cell succeeded; the script prints each notebook's wall
time and exits non-zero if any failed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GLOBS = ("chapters/*.ipynb", "book/*.ipynb")


def default_notebooks() -> list[Path]:
    found = []
    for pattern in DEFAULT_GLOBS:
        found += sorted(p for p in ROOT.glob(pattern) if ".ipynb_checkpoints" not in p.parts)
    return found


def kernel_env(threads: int | None) -> dict[str, str]:
    """The environment the kernel inherits: no MPLBACKEND (it would replace the inline
    backend and drop the figures), and optionally a thread limit for torch and BLAS."""
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    if threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    return env


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
HIDDEN = {"remove-output", "remove-cell"}


def drop_hidden_widget_state(nb) -> bool:
    """Drop the saved widget state when every widget the notebook shows sits in a cell
    that the book hides (tag remove-output or remove-cell): the static page never shows
    those controls, so their state (and the widget JavaScript it makes the page load
    from a CDN) is dead weight. Returns whether it dropped anything."""
    if "widgets" not in nb.metadata:
        return False
    for cell in nb.cells:
        if cell.cell_type == "code" and not HIDDEN & set(cell.metadata.get("tags", [])):
            if any(WIDGET_VIEW in o.get("data", {}) for o in cell.get("outputs", [])):
                return False
    del nb.metadata["widgets"]
    return True


def execute(path: Path, timeout: int, threads: int | None) -> float:
    """Run one notebook in place; returns its wall time in seconds. Raises on a failing cell."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)     # nbclient keeps stale widget state when a run makes no widget
    client = NotebookClient(
        nb,
        timeout=timeout,                 # seconds per cell
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},   # the kernel's cwd
        allow_errors=False,
        record_timing=False,             # no per-cell timestamps: smaller diffs
        store_widget_state=True,
    )
    start = time.perf_counter()
    client.execute(env=kernel_env(threads))    # env is passed on to the kernel's process
    wall = time.perf_counter() - start
    drop_hidden_widget_state(nb)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return wall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", type=Path,
                   help="notebooks to run (default: chapters/*.ipynb and book/*.ipynb)")
    p.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell (default 600)")
    p.add_argument("--threads", type=int, default=None,
                   help="limit torch/BLAS threads in the kernel (default: no limit)")
    args = p.parse_args(argv)

    paths = args.paths or default_notebooks()
    if not paths:
        print("no notebooks found", file=sys.stderr)
        return 1
    failed = []
    total = 0.0
    for path in paths:
        path = path.resolve()
        if not path.is_file() or path.suffix != ".ipynb":
            print(f"FAIL {path}: not a notebook file")
            failed.append(path)
            continue
        try:
            wall = execute(path, args.timeout, args.threads)
        except (CellExecutionError, CellTimeoutError) as err:
            print(f"FAIL {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
                  f"{type(err).__name__}\n{err}\n(notebook left unchanged)")
            failed.append(path)
            continue
        total += wall
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"{wall:7.1f} s  {shown}", flush=True)
    print(f"{total:7.1f} s  total, {len(paths) - len(failed)} ok, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
