"""The contributors' map (scripts/module_map.py, README.md's block between the
module-map markers) agrees with the package's imports, and its checks catch a forbidden
import; no module outside smallunet/book/ is longer than 250 lines."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("module_map", ROOT / "scripts" / "module_map.py")
module_map = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module_map)


def test_the_code_keeps_the_map():
    assert module_map.problems() == []


def test_readme_block_is_what_the_script_writes():
    block = module_map.readme_block((ROOT / "README.md").read_text())
    assert block is not None, "README.md lacks the module-map markers"
    assert block == module_map.render(), "run: python scripts/module_map.py --write"


def test_the_checks_catch_a_forbidden_import_and_an_unmapped_module(tmp_path, monkeypatch):
    pkg = tmp_path / "smallunet"
    (pkg / "book").mkdir(parents=True)
    (pkg / "_checks.py").write_text("")
    (pkg / "book" / "__init__.py").write_text("")
    (pkg / "book" / "anatomy.py").write_text("from ..norm import x\n")          # allowed: book -> model
    (pkg / "norm.py").write_text("def f():\n    from .book import anatomy\n    import matplotlib.pyplot\n")
    (pkg / "trainer.py").write_text("")                                          # an old path
    (pkg / "unet.py").write_text("from smallunet.trainer import Trainer\n")    # the core on an old path
    (pkg / "newthing.py").write_text("from . import _checks\n")
    monkeypatch.setattr(module_map, "PACKAGE", pkg)
    found = "\n".join(module_map.problems())
    assert "smallunet/newthing.py belongs to no part" in found
    assert "smallunet/norm.py (model) imports ['matplotlib']" in found
    assert "model may not import book: norm -> book/anatomy" in found
    assert "model may not import old paths: unet -> trainer" in found
    assert "book may not" not in found


def test_no_module_outside_book_is_over_250_lines():
    long = {str(p.relative_to(ROOT)): n for p in sorted((ROOT / "smallunet").rglob("*.py"))
            if "book" not in p.relative_to(ROOT / "smallunet").parts
            and (n := len(p.read_text().splitlines())) > 250}
    assert long == {}
