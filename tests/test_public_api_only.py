"""The package uses PyTorch's public API only: no private function (a name with a
leading underscore under torch., torch.ops.aten. or torch.ops.mkldnn.), which may change
or vanish in any release. Chapters may show one where they teach it; the package may not."""
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "smallunet"
PRIVATE = re.compile(r"\btorch(?:\.[A-Za-z]\w*)*\._\w+|\btorch\.ops\.\w+\._\w+"
                     r"|getattr\(torch[\w.]*,\s*[\"']_\w+")     # also reached by name


def test_no_private_torch_api_in_the_package():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for m in PRIVATE.finditer(code):
                if m.group(0).startswith("torch.__"):      # torch.__version__ is public
                    continue
                found.append(f"{path.relative_to(PACKAGE.parent)}:{n}: {m.group(0)}")
    assert not found, "private PyTorch API in the package:\n" + "\n".join(found)
