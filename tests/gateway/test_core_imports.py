"""The core stays free of frameworks: ``gateway/core`` imports only the standard library, numpy and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import gateway.core

CORE = Path(gateway.core.__file__).parent
ALLOWED = {"numpy", "gateway"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_core_imports_only_stdlib_and_numpy() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 5
    bad = []
    for path in files:
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            if (
                module.startswith("gateway.")
                and not module.startswith("gateway.core")
                or top not in ALLOWED
                and top not in sys.stdlib_module_names
                and top != "__future__"
            ):
                bad.append(f"{path.name}:{line} imports {module}")
    assert bad == []


def test_the_check_catches_a_framework_import(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import fastapi\nfrom gateway.protocol import http\nfrom numpy import ndarray\n")
    assert [m for _, m in imported_modules(sample)] == ["fastapi", "gateway.protocol", "numpy"]
