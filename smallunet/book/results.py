"""The results the repository records under ``bench/`` (each written by the script that
measured it), found from a chapter: the chapters quote them and check their prose
against them. A pip install from the repository has no ``bench/``; then there is
nothing to quote, and the cell says so instead of failing."""
from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]          # the checkout, for an editable install


def bench_file(name: str, start: Path | str = ".") -> Path | None:
    """``bench/<name>`` of this checkout: beside the chapters (``<start>/../bench``, as
    in the book's build and on Colab's clone) or of the installed package's checkout;
    None where neither has it."""
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise ValueError(f"name must be a file name in bench/ such as 'recipe.json', got {name!r}")
    for folder in (Path(start) / ".." / "bench", REPO / "bench"):
        if (folder / name).is_file():
            return folder / name
    return None


def bench_json(name: str, start: Path | str = ".") -> dict | None:
    """The parsed ``bench/<name>``, or None where it is not in this installation."""
    path = bench_file(name, start)
    return None if path is None else json.loads(path.read_text())


def markdown_body(path: Path) -> str:
    """A results page without its title and figures: the text and tables to display."""
    return path.read_text().split("\n", 1)[1].split("![")[0]


def branch_scores(study: dict) -> dict:
    """The branch study's scores (``bench/branch_study.json``) per entry, the shipped model
    first and then each arm that is scored: the EMA's FID-like scores over the sampling
    seeds (``ema``), their mean and standard deviation, and the raw weights' score
    (``raw``, None where not measured); and the ``winner``, the arm whose EMA scores
    lowest on average (None before any arm is scored)."""
    import numpy as np
    rows = {}
    for name, entry in {"shipped": study["shipped"], **study["arms"]}.items():
        by_kind = {kind: [v["fid"] for k, v in sorted(study["scores"].items())
                          if k.startswith(f"{entry['weights_sha256']} | {kind} |")] for kind in ("ema", "model")}
        if len(by_kind["ema"]) < 2:            # a spread needs two sampling seeds
            continue
        rows[name] = dict(ema=by_kind["ema"], ema_mean=round(float(np.mean(by_kind["ema"])), 3),
                          ema_std=round(float(np.std(by_kind["ema"])), 3),
                          raw=by_kind["model"][0] if by_kind["model"] else None)
    arms = [a for a in study["arms"] if a in rows]
    return dict(rows=rows, winner=min(arms, key=lambda a: rows[a]["ema_mean"]) if arms else None)
