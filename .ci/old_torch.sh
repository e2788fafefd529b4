#!/usr/bin/env bash
# The second CI leg: the unit tests (no notebooks, no book build) on an older torch,
# the CPU wheel of torch 2.13.0 that lies on this machine's disk, in a venv of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${OLD_TORCH_VENV:-/tmp/smallunet-torch213}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q torch==2.13.0 numpy einops safetensors tqdm scipy matplotlib pytest nbformat \
        accelerate diffusers
fi
"$VENV/bin/pip" install -q --no-deps -e . smalldiffusion==0.5.0
"$VENV/bin/python" -c "import torch; print('old-torch leg: torch', torch.__version__)"
# torch 2.13 is the lowest torch pyproject.toml allows, so every unit test runs here, the
# maths tests against smalldiffusion 0.5.0 included. smalldiffusion imports torchvision at
# import time (for datasets the tests never use) and no torchvision wheel runs beside this
# torch 2.13 CPU file (PyPI's fails with "operator torchvision::nms does not exist"): a stub
# stands in for it (.ci/torchvision_stub). Not here: the book build, the browser test and
# the notebooks' metadata (the main run has them).
if ! "$VENV/bin/python" -c "import torchvision" 2>/dev/null; then
    export PYTHONPATH="$PWD/.ci/torchvision_stub${PYTHONPATH:+:$PYTHONPATH}"
fi
OMP_NUM_THREADS=1 "$VENV/bin/python" -m pytest -p no:cacheprovider -q -o addopts="" -m "not slow" tests \
    --ignore=tests/test_book_build.py --ignore=tests/test_browser.py --ignore=tests/test_notebooks_meta.py
