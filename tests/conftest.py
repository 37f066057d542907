"""Every test gets an artefact cache of its own (``compressor.artefacts``), never the user's
``~/.cache/varigate``: a build in one test (or in an earlier run of the suite) cannot stand in for a pass
another test means to run. Session- and module-scoped fixtures share one for the session; subprocesses
inherit it through the environment."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

CACHE_ENV = "VARIGATE_CACHE_DIR"


@pytest.fixture(scope="session", autouse=True)
def _session_artefact_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(tmp_path_factory.getbasetemp() / "artefact-cache" / "session"))
        yield


@pytest.fixture(autouse=True)
def _artefact_cache(
    _session_artefact_cache: None,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    test = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    monkeypatch.setenv(CACHE_ENV, str(tmp_path_factory.getbasetemp() / "artefact-cache" / test))
