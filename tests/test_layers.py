"""The package's layers: no module imports from a layer above its own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "llmrca"

#: Bottom to top. Top-level modules not listed are the shared base (errors, documents, ...).
LAYERS = {"store": 1, "ingest": 2, "models": 3, "replay": 4, "judges": 4, "zoo": 4,
          "internals": 4, "attribution": 4, "data_attribution": 4, "hypotheses": 4.5,
          "samples": 4, "incidents": 4, "verify": 4, "triage": 4, "viz": 5, "reports": 6,
          "cli": 7}


def layer_of(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every ``llmrca`` module ``path`` imports, at module level or inside a function."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("llmrca")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("llmrca"):
            found.append((node.lineno, node.module))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")
                 or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_goes_up_a_layer(path):
    module = "llmrca." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    upward = [f"line {line}: {name}" for line, name in imports_of(path)
              if layer_of(name) > layer_of(module)]
    assert not upward, f"{module} imports from a higher layer: {upward}"


def test_ingest_and_the_shared_loader_do_not_load_models_or_torch():
    code = ("import sys, llmrca.documents, llmrca.ingest, llmrca.judges.rules, llmrca.zoo.spec; "
            "print(sorted(m for m in ('llmrca.models', 'torch', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
