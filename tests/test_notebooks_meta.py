"""The book's notebooks are committed executed: the rendered book does not execute
anything (``execute_notebooks: off``), so what a reader sees is what is stored.

For every page in _toc.yml: the file exists; a notebook has a python3 kernelspec,
was run top to bottom in one kernel (execution counts 1, 2, 3, ...), has an output
in each cell that should show one, no error outputs (except in a cell marked
``# NBVAL_RAISES_EXCEPTION``), and at least one ``# NBVAL_CHECK_OUTPUT`` cell whose
output CI compares.
"""
from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = (".ipynb", ".md", ".myst", ".rst")
# a call as a cell's last line that returns None, so shows nothing
SILENT_CALLS = {"assert_close", "assert_allclose", "assert_array_equal", "assert_equal",
                "savefig", "close", "seed", "set_printoptions", "filterwarnings", "use"}


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    walk(toc.get("sections"))
    return files


def resolve(entry: str) -> Path | None:
    path = ROOT / entry
    if path.suffix in SUFFIXES and path.is_file():
        return path
    for suffix in SUFFIXES:
        if path.with_suffix(suffix).is_file():
            return path.with_suffix(suffix)
    return None


ENTRIES = toc_files()
NOTEBOOKS = [p for p in map(resolve, ENTRIES) if p is not None and p.suffix == ".ipynb"]


def ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


def first_line(cell) -> str:
    return cell.source.lstrip().split("\n", 1)[0].strip()


def should_show_output(source: str) -> bool:
    """True when the cell prints, displays, or ends in an expression that is not
    silenced with ';' and is not a call known to return None."""
    lines = [ln for ln in source.split("\n") if not ln.lstrip().startswith(("%", "!"))]
    code = "\n".join(lines)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("print", "display"):
            return True
    if not tree.body or not isinstance(tree.body[-1], ast.Expr) or code.rstrip().endswith(";"):
        return False
    value = tree.body[-1].value
    if isinstance(value, ast.Constant) and value.value is None:
        return False
    if isinstance(value, ast.Call):
        func = value.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in SILENT_CALLS:
            return False
    return True


@pytest.mark.parametrize("entry", ENTRIES)
def test_toc_entry_exists(entry):
    assert resolve(entry) is not None, f"_toc.yml names {entry!r}, but no file {entry}.{{ipynb,md}} exists"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_kernelspec_is_python3(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", (
        f"{path.name}: kernelspec name must be python3, got {nb.metadata.get('kernelspec')}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_executed_top_to_bottom(path):
    nb = nbformat.read(path, as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts are {counts}; re-run it top to bottom with "
        f"python scripts/execute_notebooks.py {ids(path)}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_outputs_committed(path):
    nb = nbformat.read(path, as_version=4)
    missing = [i for i, c in enumerate(nb.cells)
               if c.cell_type == "code" and should_show_output(c.source) and not c.outputs]
    assert not missing, f"{path.name}: cells {missing} should show output but have none stored"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_no_error_outputs(path):
    nb = nbformat.read(path, as_version=4)
    errors = [(i, o.get("ename")) for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"
              and first_line(c) != "# NBVAL_RAISES_EXCEPTION"]
    assert not errors, f"{path.name}: error outputs in cells {errors}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_has_a_checked_output(path):
    nb = nbformat.read(path, as_version=4)
    checked = [c for c in nb.cells if c.cell_type == "code" and first_line(c) == "# NBVAL_CHECK_OUTPUT"]
    assert checked, f"{path.name}: mark at least one cell whose output must not drift with # NBVAL_CHECK_OUTPUT"
    empty = [c.source.split("\n")[1:2] for c in checked if not c.outputs]
    assert not empty, f"{path.name}: # NBVAL_CHECK_OUTPUT cells without stored output: {empty}"


def test_should_show_output_heuristic():
    assert should_show_output("x = 1\nx")
    assert should_show_output("print(1)")
    assert should_show_output("plot_groups(x)")
    assert not should_show_output("x = 1")
    assert not should_show_output("fig = f()\nfig;")
    assert not should_show_output("torch.testing.assert_close(a, b)")
    assert not should_show_output("def f():\n    return 1")
