"""A Sphinx extension: put the live sampler (issue 24) into the built book.

Chapters 8 and 9 hold a ``<div class="smallunet-live" data-model="...">`` and a
``<script src="../_static/live/live_sampler.js">`` in a Markdown cell. This extension
makes those files exist in the build, all under ``_static/live/``:

- ``live_sampler.js``: book/live/live_sampler.js, preceded by the settings the page takes
  from the package (``scripts/export_onnx.py --live-config``: the sampler's defaults, each
  model's classes, recommended guidance scale and schedule levels);
- ``unet_fashion.onnx``, ``unet_fashion_cond.onnx``: the shipped weights exported by
  ``scripts/export_onnx.py`` (run at every build; it re-exports only when the weights'
  SHA-256 changed, into its cache ``_build/onnx/``);
- ``ort/``: onnxruntime-web's WebAssembly build (``ort.wasm.min.js``, the ``.mjs`` and
  ``.wasm`` it loads) and its WebGPU build (``ort.webgpu.min.js`` and its ``asyncify``
  pair), MIT licence, copied from ``node_modules/onnxruntime-web``, which
  ``npm ci`` installs at the version and hashes pinned in package-lock.json.

Anything missing (npm ci not run, the export failing) is a Sphinx warning, so the book's
``-W`` build fails and says what to run, rather than shipping a sampler that cannot load.

Enabled in _config.yml: ``sphinx: local_extensions: {live_sampler: book/_ext}``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
SOURCE_JS = ROOT / "book" / "live" / "live_sampler.js"
EXPORT = ROOT / "scripts" / "export_onnx.py"
CACHE = ROOT / "_build" / "onnx"
ORT_PACKAGE = ROOT / "node_modules" / "onnxruntime-web"
# the two builds the page chooses from: each a loader, the Emscripten glue it imports and its binary
RUNTIME_FILES = {"wasm": ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"),
                 "webgpu": ("ort.webgpu.min.js", "ort-wasm-simd-threaded.asyncify.mjs",
                            "ort-wasm-simd-threaded.asyncify.wasm")}
ORT_FILES = RUNTIME_FILES["wasm"] + RUNTIME_FILES["webgpu"]
TARGET = Path("_static") / "live"
MIT = """onnxruntime-web {version} (https://github.com/microsoft/onnxruntime), from npm.

MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def pinned_version() -> str:
    """The onnxruntime-web version package.json asks for (an exact pin)."""
    return json.loads((ROOT / "package.json").read_text())["dependencies"]["onnxruntime-web"]


def runtime_problem() -> str | None:
    """Why node_modules cannot supply the runtime, or None when it can."""
    manifest = ORT_PACKAGE / "package.json"
    if not manifest.is_file():
        return f"onnxruntime-web is not installed ({ORT_PACKAGE} is missing): run `npm ci` in {ROOT}"
    installed, wanted = json.loads(manifest.read_text())["version"], pinned_version()
    if installed != wanted:
        return f"onnxruntime-web {installed} is installed, package.json pins {wanted}: run `npm ci` in {ROOT}"
    missing = [f for f in ORT_FILES if not (ORT_PACKAGE / "dist" / f).is_file()]
    if missing:
        return f"onnxruntime-web {installed} lacks {', '.join(missing)} in {ORT_PACKAGE / 'dist'}"
    return None


def export_models() -> dict | None:
    """Run scripts/export_onnx.py (re-exports only when the weights changed) and return the
    page's settings, or None after a warning."""
    config = CACHE / "live_config.json"
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    run = subprocess.run([sys.executable, str(EXPORT), "--out", str(CACHE), "--threads", "1",
                          "--live-config", str(config)], cwd=ROOT, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        logger.warning("live_sampler: scripts/export_onnx.py failed (the live sampler needs onnx and "
                       "onnxscript, in requirements.txt):\n" + (run.stdout + run.stderr)[-3000:])
        return None
    logger.info("live_sampler: " + " | ".join(line for line in run.stdout.strip().splitlines()
                                               if not line.startswith("[torch.onnx]")))
    return json.loads(config.read_text())


def prepare(app) -> None:
    app.env_live_sampler = None
    if app.builder.format != "html":
        return
    problem = runtime_problem()
    if problem:
        logger.warning("live_sampler: " + problem)
        return
    config = export_models()
    if config is not None:
        app.env_live_sampler = config


def copy_into_build(app, exception) -> None:
    config = getattr(app, "env_live_sampler", None)
    if exception is not None or config is None or app.builder.format != "html":
        return
    dest = Path(app.outdir) / TARGET
    (dest / "ort").mkdir(parents=True, exist_ok=True)
    for f in ORT_FILES:
        shutil.copy2(ORT_PACKAGE / "dist" / f, dest / "ort" / f)
    (dest / "ort" / "LICENSE.txt").write_text(MIT.format(version=pinned_version()))
    config = dict(config, runtime_bytes={kind: sum((ORT_PACKAGE / "dist" / f).stat().st_size for f in files)
                                         for kind, files in RUNTIME_FILES.items()})
    for model in config["models"].values():
        shutil.copy2(CACHE / model["file"], dest / model["file"])
        model["bytes"] = (dest / model["file"]).stat().st_size     # what the page says it downloads
    header = ("/* Built by book/_ext/live_sampler.py from book/live/live_sampler.js; the settings\n"
              "   below come from the package (scripts/export_onnx.py --live-config). */\n")
    settings = "window.SMALLUNET_LIVE = " + json.dumps(config, separators=(",", ":")) + ";\n"
    (dest / "live_sampler.js").write_text(header + settings + SOURCE_JS.read_text())


def setup(app):
    app.connect("builder-inited", prepare)
    app.connect("build-finished", copy_into_build)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
