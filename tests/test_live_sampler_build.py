"""The live sampler's build step (book/_ext/live_sampler.py) without a browser: it finds
onnxruntime-web where ``npm ci`` puts it at the version package.json pins, says what to
run when it is missing or another version, and copies the runtime, the models and the
script (with the package's settings) into the build."""
from __future__ import annotations

import importlib.util
import json
import types
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="the book's build tools are not installed")   # e.g. the old-torch leg
ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("live_sampler_ext", ROOT / "book" / "_ext" / "live_sampler.py")
ext = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ext)


def test_the_pin_is_exact_and_locked():
    version = ext.pinned_version()
    assert version.count(".") == 2 and version.replace(".", "").isdigit(), f"not an exact pin: {version}"
    lock = json.loads((ROOT / "package-lock.json").read_text())
    locked = lock["packages"]["node_modules/onnxruntime-web"]
    assert locked["version"] == version and locked["integrity"].startswith("sha512-")


def test_npm_ci_installed_the_runtime():
    """The README's commands run ``npm ci``; without it the -W build fails with this message."""
    assert ext.runtime_problem() is None


def test_a_missing_or_other_runtime_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setattr(ext, "ORT_PACKAGE", tmp_path / "onnxruntime-web")
    assert "npm ci" in ext.runtime_problem() and "is missing" in ext.runtime_problem()
    (tmp_path / "onnxruntime-web" / "dist").mkdir(parents=True)
    (tmp_path / "onnxruntime-web" / "package.json").write_text(json.dumps({"version": "0.0.1"}))
    assert "0.0.1 is installed" in ext.runtime_problem() and "npm ci" in ext.runtime_problem()
    (tmp_path / "onnxruntime-web" / "package.json").write_text(json.dumps({"version": ext.pinned_version()}))
    assert "lacks ort.wasm.min.js" in ext.runtime_problem()


def test_the_build_gets_runtime_models_and_settings(tmp_path, monkeypatch):
    if ext.runtime_problem():
        pytest.fail(ext.runtime_problem())
    cache = tmp_path / "cache"
    cache.mkdir()
    config = {"defaults": {"steps": 20}, "models": {"m": {"file": "m.onnx", "levels": [0.01, 20.0]}}}
    (cache / "m.onnx").write_bytes(b"\0" * 1234)
    monkeypatch.setattr(ext, "CACHE", cache)
    app = types.SimpleNamespace(outdir=str(tmp_path / "html"), builder=types.SimpleNamespace(format="html"),
                                env_live_sampler=config)
    ext.copy_into_build(app, None)
    live = tmp_path / "html" / "_static" / "live"
    for f in ext.ORT_FILES:
        assert (live / "ort" / f).read_bytes() == (ext.ORT_PACKAGE / "dist" / f).read_bytes()
    assert "MIT License" in (live / "ort" / "LICENSE.txt").read_text()
    assert (live / "m.onnx").stat().st_size == 1234
    js = (live / "live_sampler.js").read_text()
    settings = json.loads(js.split("window.SMALLUNET_LIVE = ", 1)[1].split(";\n", 1)[0])
    assert settings["models"]["m"]["bytes"] == 1234 and settings["models"]["m"]["levels"] == [0.01, 20.0]
    for kind, files in ext.RUNTIME_FILES.items():
        assert settings["runtime_bytes"][kind] == sum((ext.ORT_PACKAGE / "dist" / f).stat().st_size for f in files)
    assert js.endswith(ext.SOURCE_JS.read_text())
    ext.copy_into_build(types.SimpleNamespace(**{**vars(app), "outdir": str(tmp_path / "failed")}),
                        RuntimeError("the build failed"))
    assert not (tmp_path / "failed").exists()            # nothing copied after a failed build
