"""Two real tritonservers for the Triton fleet's tests (``tests.fixtures.triton_pair``), started once per
module: server A serves ``tiny.fp32``, ``tiny.int8`` and ``clf.fp32``; server B the same without
``clf.fp32``. Both keep their ports across restarts, so a test that kills or stops one can bring it back
where the fleet expects it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.tinyrepo import build_tiny_repository
from tests.fixtures.triton_pair import Pair, start_pair

MODELS_A = ["tiny.fp32", "tiny.int8", "clf.fp32"]
MODELS_B = ["tiny.fp32", "tiny.int8"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("fleet")
    yield from start_pair(build_tiny_repository(root / "src"), root, MODELS_A, MODELS_B)
