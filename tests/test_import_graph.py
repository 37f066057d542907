"""The layout's boundaries, checked on the import graph that ``ast`` reads from every module (imports inside
functions and under ``TYPE_CHECKING`` included):

- ``varigate/contract`` imports only the standard library (and itself);
- ``gateway/core`` imports only the standard library, numpy, itself and ``varigate.contract``;
- ``compressor`` and ``loadtest`` never import ``gateway`` (the load tester is a client of any Triton server);
- no import cycle between the project's modules.

``violations(root)`` works on any tree, so the tests below also plant one violation of each rule in a tiny
tree and assert that exactly that violation is reported.
"""

from __future__ import annotations

import ast
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("compressor", "gateway", "loadtest", "varigate")


@dataclass(frozen=True, slots=True)
class Import:
    source: str  # the importing module, e.g. "gateway.core.service"
    target: str  # the imported module or name, absolute, e.g. "varigate.contract.keys"
    where: str  # "gateway/core/service.py:44"


def modules(root: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file of the project's packages under ``root``."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(root: Path, name: str, path: Path) -> list[Import]:
    """Every import statement in the module, anywhere in it, as absolute names."""
    is_package = path.name == "__init__.py"
    package = name.split(".") if is_package else name.split(".")[:-1]
    where = str(path.relative_to(root))
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), where)):
        if isinstance(node, ast.Import):
            found += [Import(name, alias.name, f"{where}:{node.lineno}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            # ``from a import b`` imports module ``a.b`` when there is one, else a name of ``a``
            found += [
                Import(name, f"{module}.{alias.name}", f"{where}:{node.lineno}") for alias in node.names
            ]
    return found


def _top(target: str) -> str:
    return target.split(".")[0]


def _within(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


def _stdlib(target: str) -> bool:
    return _top(target) in sys.stdlib_module_names or _top(target) == "__future__"


# the drift benchmark simulates the core's sequential test itself (no server): its only way into gateway
DRIFT_SIMULATION = ("loadtest.benchmarks.drift", "loadtest.benchmarks.drift_report")


def boundary_violations(edges: list[Import]) -> list[str]:
    bad = []
    for e in edges:
        if _within(e.source, "varigate.contract"):
            if not (_stdlib(e.target) or _within(e.target, "varigate.contract")):
                bad.append(
                    f"{e.where}: {e.source} imports {e.target} (the contract is standard library only)"
                )
        elif _within(e.source, "gateway.core"):
            allowed = ("gateway.core", "varigate.contract", "numpy")
            if not (_stdlib(e.target) or any(_within(e.target, a) for a in allowed)):
                bad.append(
                    f"{e.where}: {e.source} imports {e.target} "
                    "(gateway/core: standard library, numpy and varigate.contract only)"
                )
        elif e.source in DRIFT_SIMULATION and _within(e.target, "gateway.core.drift"):
            pass  # the drift benchmark simulates the core's sequential test itself: no server
        elif _top(e.source) in ("compressor", "loadtest") and _top(e.target) == "gateway":
            bad.append(f"{e.where}: {e.source} imports {e.target} ({_top(e.source)} never imports gateway)")
    return bad


def _resolve(target: str, known: dict[str, Path]) -> str | None:
    """The project module an import names: the longest known prefix of ``target``."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in known:
            return candidate
    return None


def cycles(edges: list[Import], known: dict[str, Path]) -> list[str]:
    """One cycle per strongly connected group of modules, as ``a -> b -> a`` (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {m: set() for m in known}
    for e in edges:
        target = _resolve(e.target, known)
        if target is not None and target != e.source:
            graph[e.source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return [" -> ".join(_path_round(min(g), g, graph)) for g in groups]


def _path_round(start: str, group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """The shortest path from ``start`` back to itself inside ``group`` (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"{start} is in a cycle that has no path back to it")


def violations(root: Path) -> list[str]:
    """Every boundary violation and every import cycle among the project's modules under ``root``."""
    known = modules(root)
    edges = [e for name, path in known.items() for e in imports(root, name, path)]
    return boundary_violations(edges) + [f"import cycle: {c}" for c in cycles(edges, known)]


def test_the_repository_keeps_its_boundaries_and_has_no_cycles() -> None:
    known = modules(ROOT)
    assert {
        "varigate.contract.card",
        "gateway.core.service",
        "loadtest.clients",
        "compressor.pipeline",
    } <= set(known)
    assert violations(ROOT) == []


# A tiny tree that keeps every rule; each test below plants one violation in a copy of it.
TINY = {
    "varigate/__init__.py": "",
    "varigate/contract/__init__.py": "",
    "varigate/contract/keys.py": "import json\nNAME = 'x'\n",
    "varigate/contract/card.py": "from __future__ import annotations\nfrom varigate.contract import keys\n",
    "gateway/__init__.py": "",
    "gateway/settings.py": "import pydantic\n",
    "gateway/core/__init__.py": "",
    "gateway/core/service.py": (
        "import numpy as np\nfrom varigate.contract.keys import NAME\nfrom . import util\n"
    ),
    "gateway/core/util.py": "import asyncio\n",
    "compressor/__init__.py": "",
    "compressor/pipeline.py": "import torch\nfrom varigate.contract import card\n",
    "loadtest/__init__.py": "",
    "loadtest/clients.py": "import tritonclient.http\n\ndef f():\n    from loadtest import stream\n",
    "loadtest/stream.py": "from loadtest.reply import Reply\n",
    "loadtest/reply.py": "from varigate.contract.keys import NAME\n",
}


def tiny_tree(tmp_path: Path, changes: dict[str, str] | None = None) -> Path:
    """``TINY`` under ``tmp_path``, with the files in ``changes`` (path: text) added or replaced."""
    for rel, text in {**TINY, **(changes or {})}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_tiny_tree_is_clean(tmp_path: Path) -> None:
    assert violations(tiny_tree(tmp_path)) == []


def test_a_third_party_import_in_the_contract_is_reported(tmp_path: Path) -> None:
    root = tiny_tree(tmp_path, {"varigate/contract/keys.py": "import json\n\ndef f():\n    import numpy\n"})
    assert violations(root) == [
        "varigate/contract/keys.py:4: varigate.contract.keys imports numpy (the contract is standard library "
        "only)"
    ]


def test_the_contract_importing_the_gateway_is_reported(tmp_path: Path) -> None:
    root = tiny_tree(tmp_path, {"varigate/contract/card.py": "from gateway.core import util\n"})
    assert violations(root) == [
        (
            "varigate/contract/card.py:1: varigate.contract.card imports gateway.core.util "
            "(the contract is standard library only)"
        )
    ]


def test_a_framework_or_gateway_import_in_the_core_is_reported(tmp_path: Path) -> None:
    root = tiny_tree(
        tmp_path, {"gateway/core/util.py": "import asyncio\nimport fastapi\nfrom ..settings import X\n"}
    )
    rule = "(gateway/core: standard library, numpy and varigate.contract only)"
    assert violations(root) == [
        f"gateway/core/util.py:2: gateway.core.util imports fastapi {rule}",
        f"gateway/core/util.py:3: gateway.core.util imports gateway.settings.X {rule}",
    ]


def test_the_load_tester_or_compressor_importing_the_gateway_is_reported(tmp_path: Path) -> None:
    root = tiny_tree(
        tmp_path,
        {
            "loadtest/reply.py": "def f():\n    from gateway.core.service import NAME\n",
            "compressor/pipeline.py": "import gateway\n",
        },
    )
    assert violations(root) == [
        "compressor/pipeline.py:1: compressor.pipeline imports gateway (compressor never imports gateway)",
        "loadtest/reply.py:2: loadtest.reply imports gateway.core.service.NAME (loadtest never imports "
        "gateway)",
    ]


def test_an_import_cycle_is_reported_with_its_path(tmp_path: Path) -> None:
    # clients -> stream (inside a function) -> reply -> clients (by a relative import)
    root = tiny_tree(tmp_path, {"loadtest/reply.py": "from .clients import f\n"})
    assert violations(root) == [
        "import cycle: loadtest.clients -> loadtest.stream -> loadtest.reply -> loadtest.clients"
    ]


def test_a_cycle_through_a_type_checking_import_is_reported(tmp_path: Path) -> None:
    root = tiny_tree(
        tmp_path,
        {
            "gateway/settings.py": "from gateway.policies import parse\n",
            "gateway/policies.py": (
                "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from gateway.settings import S\n"
            ),
        },
    )
    assert violations(root) == ["import cycle: gateway.policies -> gateway.settings -> gateway.policies"]


def test_the_real_tree_with_a_planted_violation_fails(tmp_path: Path) -> None:
    """The check on a copy of the real packages, with ``loadtest`` given a gateway import again."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "data")
        )
    planted = tmp_path / "loadtest" / "reply.py"
    planted.write_text(
        planted.read_text() + "\n\ndef _codec() -> None:\n    import gateway.protocol.grpc_codec\n"
    )
    lines = len(planted.read_text().splitlines())
    assert violations(tmp_path) == [
        (
            f"loadtest/reply.py:{lines}: loadtest.reply imports gateway.protocol.grpc_codec "
            "(loadtest never imports gateway)"
        )
    ]
