"""The Colab install cell (scripts/colab_cell.py): what it does, and that every
notebook starts with exactly that text.

The cell is exec'd here with a fake ``google.colab`` module and with
``importlib.util.find_spec`` and ``subprocess.check_call`` replaced, so no test
installs anything.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CELL_PATH = ROOT / "scripts" / "colab_cell.py"
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb")) + sorted((ROOT / "book").glob("*.ipynb"))


def cell_text() -> str:
    return CELL_PATH.read_text().rstrip("\n")


def run_cell(monkeypatch, *, on_colab: bool, installed: bool) -> tuple[list, dict]:
    """exec the cell; returns (the commands it ran with check_call, its namespace)."""
    calls = []
    real_find_spec = importlib.util.find_spec

    def fake_find_spec(name, *args, **kwargs):
        if name == "smallunet":
            return object() if installed else None
        return real_find_spec(name, *args, **kwargs)

    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    monkeypatch.setattr(subprocess, "check_call", lambda cmd, *a, **k: calls.append(cmd) or 0)
    namespace: dict = {}
    exec(compile(cell_text(), str(CELL_PATH), "exec"), namespace)
    return calls, namespace


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def test_installs_from_the_repository_on_colab_when_missing(monkeypatch):
    calls, ns = run_cell(monkeypatch, on_colab=True, installed=False)
    assert len(calls) == 1
    cmd = calls[0]
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
    assert cmd[-1] == f"smallunet[book] @ git+{ns['REPO']}.git@main"


@pytest.mark.parametrize("on_colab, installed", [(False, False), (False, True), (True, True)])
def test_does_nothing_elsewhere(monkeypatch, on_colab, installed):
    calls, _ = run_cell(monkeypatch, on_colab=on_colab, installed=installed)
    assert calls == []


def test_repository_url_is_the_one_in_config(monkeypatch):
    _, ns = run_cell(monkeypatch, on_colab=False, installed=True)
    repo = config()["repository"]
    assert ns["REPO"] == repo["url"].rstrip("/"), "the REPO in scripts/colab_cell.py must equal repository.url in _config.yml"
    assert f".git@{repo['branch']}" in cell_text(), "the cell must install the branch named in _config.yml"


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in chapters/ or book/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_starts_with_the_colab_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cells"
    first = code[0]
    assert first.source.rstrip("\n") == cell_text(), (
        f"the first code cell of {path.name} must be exactly the text of scripts/colab_cell.py")
    assert "remove-cell" in first.metadata.get("tags", []), (
        f"the Colab cell of {path.name} must be tagged remove-cell (hidden in the book)")
