"""The contributors' map: the package's layout as parts, and the imports allowed
between them, read from the code itself (``ast``: every ``import`` in every module,
inside functions too).

    python scripts/module_map.py            # print the map and any broken rule
    python scripts/module_map.py --write    # rewrite README.md's block between the markers

``tests/test_module_map.py`` fails when a module belongs to no part, when an import
crosses from one part into a part it may not import (the core never imports
``smallunet.book``, matplotlib, ipywidgets or scipy; nothing but an old path imports an
old path), or when README.md's block is not what this script writes.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "smallunet"
README = ROOT / "README.md"
START, END = "<!-- module-map:start -->", "<!-- module-map:end -->"

# part -> (what it is, its modules; a name ending in "/" is a whole folder)
PARTS = {
    "base": ("input checks, devices, files, the data", (
        "_checks", "device", "checkpoint", "data", "runrecord")),
    "model": ("the U-Net and its components (chapters 1-6)", (
        "norm", "resample", "embedding", "resnet", "attention", "cpu_speedups", "unet", "denoiser")),
    "diffusion": ("noise schedules, the samplers, the plain training loop (chapters 7-8)", (
        "schedules", "sampling", "plain_training")),
    "training": ("the fast trainer, its parts, its command line, the shipped model", (
        "train_config", "train_recipe", "train_data", "ema", "distributed", "train_state",
        "fast_trainer", "cli", "__main__", "pretrained")),
    "evaluation": ("the classifier, the distances, the protocol, guidance measured", (
        "classifier", "distances", "protocol", "guidance")),
    "api": ("the public API, re-exported", ("__init__",)),
    "book": ("what only the chapters use ([book] extra)", ("book/",)),
    "old paths": ("deprecated aliases of modules that moved", (
        "_moved", "trainer", "training", "recipe", "evaluation", "dropout", "book/inspect")),
}
CORE = ("base", "model", "diffusion", "training", "evaluation", "api")
# part -> the other parts it may import from (every part may import from itself)
ALLOWED = {
    "base": (),
    "model": ("base",),
    "diffusion": ("base", "model"),
    "training": ("base", "model", "diffusion"),
    "evaluation": ("base", "model", "diffusion"),
    "api": ("base", "model", "diffusion", "training", "evaluation"),
    "book": ("base", "model", "diffusion", "training", "evaluation", "api"),
    "old paths": ("base", "model", "diffusion", "training", "evaluation", "book"),
}
BOOK_ONLY = ("matplotlib", "ipywidgets", "scipy")   # third-party packages only book/ may import


def modules() -> dict[str, Path]:
    """{module name relative to the package, such as "book/plotting/unet": its file}."""
    return {p.relative_to(PACKAGE).with_suffix("").as_posix(): p for p in sorted(PACKAGE.rglob("*.py"))}


def part_of(name: str) -> str | None:
    """The part a module belongs to: the most specific entry that names it."""
    best, length = None, -1
    for part, (_, names) in PARTS.items():
        for entry in names:
            hit = name.startswith(entry) if entry.endswith("/") else name == entry
            if hit and len(entry) > length:
                best, length = part, len(entry)
    return best


def imports(name: str, path: Path) -> tuple[set[str], set[str]]:
    """(modules of the package, top-level third-party packages) that ``name`` imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name.split("/")[:-1]          # the folder that relative imports start from
    ours, theirs = set(), set()
    known = modules()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "smallunet" or alias.name.startswith("smallunet."):
                    ours.add(_resolve(alias.name.split(".")[1:], known))
                else:
                    theirs.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module == "smallunet" or (node.module or "").startswith("smallunet."):
                    base = node.module.split(".")[1:]
                else:
                    theirs.add((node.module or "").split(".")[0])
                    continue
            else:
                base = package[:len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            for alias in node.names:      # "from . import x" may name a module
                ours.add(_resolve(base + [alias.name], known))
    ours.discard(name)
    return {m for m in ours if m}, theirs


def _resolve(parts: list[str], known: dict[str, Path]) -> str:
    """The deepest module that a dotted path names (a package means its __init__)."""
    for k in range(len(parts), -1, -1):
        cand = "/".join(parts[:k])
        if cand in known:
            return cand
        if ("/".join(parts[:k] + ["__init__"]) if k else "__init__") in known:
            return "/".join(parts[:k] + ["__init__"]) if k else "__init__"
    return ""


def arrows() -> dict[tuple[str, str], set[str]]:
    """{(part, part it imports): the module-level imports that make the arrow}."""
    out: dict[tuple[str, str], set[str]] = {}
    for name, path in modules().items():
        ours, _ = imports(name, path)
        for target in ours:
            src, dst = part_of(name), part_of(target)
            if src is not None and dst is not None and src != dst:   # unmapped: see problems()
                out.setdefault((src, dst), set()).add(f"{name} -> {target}")
    return out


def problems() -> list[str]:
    """Every broken rule, as a sentence; empty when the code keeps the map."""
    found = []
    for name, path in modules().items():
        part = part_of(name)
        if part is None:
            found.append(f"smallunet/{name}.py belongs to no part: add it to PARTS in scripts/module_map.py")
            continue
        _, theirs = imports(name, path)
        if part in CORE and theirs & set(BOOK_ONLY):
            found.append(f"smallunet/{name}.py ({part}) imports {sorted(theirs & set(BOOK_ONLY))}: "
                         f"only smallunet/book/ may")
    for (src, dst), why in sorted(arrows().items()):
        if dst not in ALLOWED[src]:
            found.append(f"{src} may not import {dst}: " + ", ".join(sorted(why)))
    return found


def render() -> str:
    """The README block: the parts, their modules, and the arrows allowed and used."""
    used = arrows()
    lines = [START,
             "Written by `python scripts/module_map.py --write` from the package's imports;",
             "`tests/test_module_map.py` fails when the code and this map disagree or a part",
             "imports one it may not. A part imports only from itself and the parts in its",
             "\"may import\" column; the core (every part but `book` and the old paths) never",
             f"imports `smallunet.book` or {', '.join(BOOK_ONLY)}.", "",
             "| part | modules (`smallunet/`) | may import | imports now |",
             "|---|---|---|---|"]
    for part, (what, names) in PARTS.items():
        now = sorted({dst for (src, dst) in used if src == part}, key=list(PARTS).index)
        mods = " ".join(f"`{n}`" for n in names)
        lines.append(f"| **{part}**: {what} | {mods} | {', '.join(ALLOWED[part]) or '-'} | "
                     f"{', '.join(now) or '-'} |")
    lines.append(END)
    return "\n".join(lines)


def readme_block(text: str) -> str | None:
    if START not in text or END not in text:
        return None
    return text[text.index(START):text.index(END) + len(END)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help="rewrite README.md's block between the markers")
    args = p.parse_args(argv)
    block = render()
    if args.write:
        text = README.read_text()
        old = readme_block(text)
        if old is None:
            print(f"README.md has no block between {START} and {END}", file=sys.stderr)
            return 1
        README.write_text(text.replace(old, block))
    print(block)
    found = problems()
    for line in found:
        print("broken:", line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
