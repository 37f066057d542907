"""Fixtures: the real gateway in a subprocess (see ``support.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import GatewayProcess, run_gateway


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The default tiny repository (tiny.fp32, tiny.int8, clf.fp32) with a 1 MiB request limit."""
    yield from run_gateway(tmp_path_factory.mktemp("main"), ["--max-request-bytes", str(1 << 20)])


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Any]:
    """A gateway of the test's own: ``start_gateway(args=[...], **TinyOptions overrides)``."""
    running: list[Iterator[GatewayProcess]] = []

    def start(args: list[str] | None = None, **repo_options: Any) -> GatewayProcess:
        it = run_gateway(tmp_path / f"gw{len(running)}", args, **repo_options)
        running.append(it)
        return next(it)

    yield start
    for it in running:
        next(it, None)
