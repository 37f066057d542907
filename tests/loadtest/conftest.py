"""Real gateways for the load tester: the tiny repository, and a deliberately slow model."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from loadtest.payloads import Payloads
from loadtest.server import GatewayProcess
from tests.fixtures.tinyrepo import VOCAB_SIZE, build_tiny_repository
from tests.loadtest.slowmodel import build_slow_repository


@pytest.fixture(scope="session")
def tiny_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """tiny.fp32, tiny.int8 (logical model ``tiny``) and clf.fp32; Triton-style batching, 2 ms delay."""
    tmp = tmp_path_factory.mktemp("lt-tiny")
    gw = GatewayProcess(build_tiny_repository(tmp / "repo"), tmp / "gateway.log").start()
    yield gw
    gw.kill()


@pytest.fixture(scope="session")
def slow_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """slow.fp32: about 10 ms of compute per request, requests run one at a time. The gateway's default
    queue timeout is off, so it holds what it queued (the load tester's own bounds are under test)."""
    tmp = tmp_path_factory.mktemp("lt-slow")
    args = ["--default-queue-timeout-ms", "0"]
    gw = GatewayProcess(build_slow_repository(tmp / "repo"), tmp / "gateway.log", args).start()
    yield gw
    gw.kill()


def tiny_payloads(count: int = 16, length: int = 6, seed: int = 0) -> Payloads:
    """Valid requests for the tiny embedder (ids inside its vocabulary)."""
    rng = np.random.default_rng(seed)
    reqs = []
    for _ in range(count):
        ids = rng.integers(1, VOCAB_SIZE, size=(1, length), dtype=np.int64)
        reqs.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    return Payloads(tuple(reqs), ("embedding",), "tiny ids")


def clf_payloads(count: int = 16) -> Payloads:
    x = np.random.default_rng(1).random((count, 1, 4), dtype=np.float32)
    return Payloads(tuple({"x": row} for row in x), (), "clf rows")


def slow_payloads(count: int = 8) -> Payloads:
    x = np.random.default_rng(2).random((count, 1, 4), dtype=np.float32)
    return Payloads(tuple({"x": row} for row in x), (), "slow rows")
