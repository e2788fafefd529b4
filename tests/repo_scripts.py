"""Load one of the repository's scripts (``bench/*.py``, ``scripts/*.py``, which are not
a package) as a module, for the tests of their functions."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str):
    """The module of ``ROOT/relative`` (e.g. "bench/nfe_study.py"), freshly executed."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
