"""The repository of a gateway in poll mode becomes unreadable, or vanishes: serving goes on with what is
loaded (models stay READY, answers stay correct), the index says why, and once the repository is back a
variant added to it is picked up.

"Unreadable" is ``chmod 000`` when the tests run as an ordinary user; as root (who reads anything) the
directory is replaced by a regular file instead. The other faults: a dangling symbolic link in its place,
and the directory deleted (renamed away, then removed, so no scan sees it half deleted).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http.aio as tha

from tests.e2e.support import GatewayProcess, tiny_batch
from tests.e2e.test_e2e_scheduling import http_inputs
from tests.fixtures.tinyrepo import build_tiny_repository, tiny_reference

POLL_S = 0.2


def unreadable(repo: Path, aside: Path) -> Callable[[], None]:
    if os.geteuid() != 0:
        repo.chmod(0)
        return lambda: repo.chmod(0o755)
    repo.rename(aside)
    repo.write_text("not a repository")

    def restore() -> None:
        repo.unlink()
        aside.rename(repo)

    return restore


def dangling_link(repo: Path, aside: Path) -> Callable[[], None]:
    repo.rename(aside)
    repo.symlink_to(aside.parent / "nowhere")

    def restore() -> None:
        repo.unlink()
        aside.rename(repo)

    return restore


def deleted(repo: Path, aside: Path) -> Callable[[], None]:
    shutil.copytree(repo, aside.with_name("copy"), symlinks=True, copy_function=shutil.copy2)
    repo.rename(aside)
    shutil.rmtree(aside)

    def restore() -> None:
        aside.with_name("copy").rename(repo)  # copy2 kept the mtimes: the same files, nothing to reload

    return restore


async def test_serving_continues_while_the_repository_is_gone(tmp_path: Path) -> None:
    repo = build_tiny_repository(tmp_path / "repo", variants=("fp32",), classifier=False)
    gw = GatewayProcess(
        repo, tmp_path / "gw.log", ["--model-control-mode", "poll", "--repository-poll-secs", str(POLL_S)]
    )
    gw.start()
    ids, mask = tiny_batch(2, 5, seed=21)
    expected = tiny_reference(ids, mask)
    answered, failures = [0], []
    stop = asyncio.Event()

    async def traffic(http: Any) -> None:
        while not stop.is_set():
            try:
                result = await http.infer("tiny", http_inputs(ids, mask))
                np.testing.assert_allclose(result.as_numpy("embedding"), expected, rtol=1e-5, atol=1e-6)
                answered[0] += 1
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                failures.append(repr(e))
                await asyncio.sleep(0.01)

    def reason(index: dict[str, dict[str, Any]]) -> str:
        return str(index["tiny.fp32"].get("reason", ""))

    async def index(http: Any) -> dict[str, dict[str, Any]]:
        return {m["name"]: m for m in await http.get_model_repository_index()}

    async def until(what: str, predicate: Callable[[dict[str, dict[str, Any]]], bool], http: Any) -> float:
        started = time.monotonic()
        while time.monotonic() - started < 10:
            if predicate(await index(http)):
                return time.monotonic() - started
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {await index(http)}")

    seen: dict[str, tuple[float, str]] = {}
    try:
        async with tha.InferenceServerClient(gw.http) as http:
            task = asyncio.create_task(traffic(http))
            for fault in (unreadable, dangling_link, deleted):
                restore = fault(repo, tmp_path / "aside")
                noticed = await until(
                    f"{fault.__name__} to show", lambda i: "cannot be read" in reason(i), http
                )
                entry = (await index(http))["tiny.fp32"]
                before = answered[0]
                await asyncio.sleep(5 * POLL_S)  # several polls of a missing repository: nothing unloads
                assert answered[0] > before and await http.is_model_ready("tiny.fp32")
                assert entry["state"] == "READY" and "still serving version 1" in entry["reason"]
                restore()
                cleared = await until(f"recovery from {fault.__name__}", lambda i: not reason(i), http)
                seen[fault.__name__] = (noticed + cleared, entry["reason"])
            build_tiny_repository(tmp_path / "more", variants=("int8",), classifier=False)
            (tmp_path / "more" / "tiny.int8").rename(repo / "tiny.int8")
            await until("the new variant", lambda i: i.get("tiny.int8", {}).get("state") == "READY", http)
            result = await http.infer("tiny.int8", http_inputs(ids, mask))
            np.testing.assert_allclose(
                result.as_numpy("embedding"), tiny_reference(ids, mask, "int8"), rtol=1e-5, atol=1e-6
            )
            stop.set()
            await task
    finally:
        stop.set()
        gw.kill()
    assert failures == [] and answered[0] > 50
    for name, (_, why) in seen.items():
        assert str(repo) in why, (name, why)
    log = gw.log()
    assert log.count("cannot be read") == len(seen), log  # logged once per fault, not once per poll
    assert log.count("readable again") == len(seen)
