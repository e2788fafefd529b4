"""The Colab install cell (scripts/colab_cell.py): what it does, and that every
notebook starts with exactly that text.

The cell is exec'd here with a fake ``google.colab`` module and with
``importlib.util.find_spec``, ``os.path.isdir``, ``os.chdir`` and ``subprocess.check_call``
replaced, so no test clones, installs or changes folder.
"""
from __future__ import annotations

import importlib.util
import os
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


def run_cell(monkeypatch, *, on_colab: bool, installed: bool, cloned: bool = False) -> tuple[list, dict]:
    """exec the cell; returns (the commands it ran with check_call and the folders it
    changed to, as ("chdir", path), in order; its namespace)."""
    calls = []
    real_find_spec, real_isdir = importlib.util.find_spec, os.path.isdir

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
    monkeypatch.setattr(os.path, "isdir", lambda p: cloned if p == "/content/smallunet" else real_isdir(p))
    monkeypatch.setattr(os, "chdir", lambda p: calls.append(("chdir", p)))
    namespace: dict = {}
    exec(compile(cell_text(), str(CELL_PATH), "exec"), namespace)
    return calls, namespace


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def test_clones_installs_and_works_in_chapters_on_colab(monkeypatch):
    calls, ns = run_cell(monkeypatch, on_colab=True, installed=False)
    clone, install, chdir = calls
    assert clone == ["git", "clone", "-q", "--depth", "1", "--branch", ns["BRANCH"], f"{ns['REPO']}.git", ns["CLONE"]]
    assert install[:4] == [sys.executable, "-m", "pip", "install"] and install[-1] == f"{ns['CLONE']}[book]"
    assert chdir == ("chdir", os.path.join(ns["CLONE"], "chapters"))


def test_on_colab_again_it_only_changes_folder(monkeypatch):
    """A second run, or one after a restart of the runtime: the clone and the install are
    there, and the chapter still finds ../bench."""
    calls, ns = run_cell(monkeypatch, on_colab=True, installed=True, cloned=True)
    assert calls == [("chdir", os.path.join(ns["CLONE"], "chapters"))]


@pytest.mark.parametrize("installed", [False, True])
def test_does_nothing_elsewhere(monkeypatch, installed):
    calls, _ = run_cell(monkeypatch, on_colab=False, installed=installed)
    assert calls == []


def test_repository_url_and_branch_are_the_ones_in_config(monkeypatch):
    _, ns = run_cell(monkeypatch, on_colab=False, installed=True)
    repo = config()["repository"]
    assert ns["REPO"] == repo["url"].rstrip("/"), "the REPO in scripts/colab_cell.py must equal repository.url in _config.yml"
    assert ns["BRANCH"] == repo["branch"], "the cell must clone the branch named in _config.yml"


def test_the_cell_works_where_the_chapters_find_their_results(monkeypatch):
    calls, ns = run_cell(monkeypatch, on_colab=True, installed=True, cloned=True)
    folder = ROOT / os.path.relpath(calls[-1][1], ns["CLONE"])
    assert folder.is_dir() and (folder / ".." / "bench").is_dir(), folder


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
