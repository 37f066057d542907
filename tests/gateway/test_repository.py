"""Reading the repository and the model control modes: none, poll (reload under traffic, broken versions),
explicit (load and unload through the API)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gateway.config_pbtxt import ConfigError
from gateway.core.errors import ModelLoadError, ModelNotFound, ModelNotReady, Unsupported
from gateway.core.models.runner import ControlMode
from gateway.core.service import Service
from gateway.repository import ModelRepository
from tests.fixtures.tinyrepo import add_version

from .conftest import serving, tiny_request

IDS = np.array([[1, 2, 3]], dtype=np.int64)


def states(service: Service) -> dict[tuple[str, str], str]:
    return {(e.name, e.version): e.state for e in service.repository_index()}


def reasons(service: Service) -> dict[str, str]:
    return {e.name: e.reason for e in service.repository_index()}


async def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


def test_scan_reads_configs_cards_and_versions(tiny_repo: Path) -> None:
    (tiny_repo / ".hidden").mkdir()
    (tiny_repo / "stray.txt").write_text("not a model")
    (tiny_repo / "tiny.int8" / "notes").mkdir()  # not a version: not numeric
    add_version(tiny_repo, "tiny.int8", 3)
    scan = ModelRepository(tiny_repo).scan()
    assert sorted(scan.models) == ["clf.fp32", "tiny.fp32", "tiny.int8"] and not scan.errors
    int8 = scan.models["tiny.int8"]
    assert list(int8.versions) == [3]  # version_policy latest 1
    assert (int8.config.logical_model, int8.config.variant) == ("tiny", "int8")
    assert int8.card is not None and int8.card.accuracy.relative_loss == pytest.approx(0.01)
    assert scan.models["clf.fp32"].card is None and scan.models["clf.fp32"].card_error == ""
    (tiny_repo / "tiny.fp32" / "varigate_card.json").write_text('{"schema_version": 1}')
    broken = ModelRepository(tiny_repo).scan().models["tiny.fp32"]  # a broken card: served without facts
    assert broken.card is None and "missing field 'logical_model'" in broken.card_error


def test_scan_records_unreadable_models(tiny_repo: Path) -> None:
    (tiny_repo / "tiny.int8" / "config.pbtxt").write_text("max_batch_size: banana")
    (tiny_repo / "empty").mkdir()
    text = (tiny_repo / "clf.fp32" / "config.pbtxt").read_text()
    (tiny_repo / "clf.fp32" / "config.pbtxt").write_text(text.replace('name: "clf.fp32"', 'name: "other"'))
    scan = ModelRepository(tiny_repo).scan()
    assert sorted(scan.models) == ["tiny.fp32"]
    assert "not a Triton model configuration" in scan.errors["tiny.int8"]
    assert "no config.pbtxt" in scan.errors["empty"]
    assert "name 'other' does not match its directory 'clf.fp32'" in scan.errors["clf.fp32"]
    with pytest.raises(ConfigError, match="is not a directory"):
        ModelRepository(tiny_repo / "missing")


async def test_none_mode_serves_what_loads_and_reports_the_rest(tiny_repo: Path) -> None:
    add_version(tiny_repo, "tiny.int8", 2, broken=True)
    async with serving(tiny_repo) as service:
        assert states(service)[("tiny.int8", "2")] == "UNAVAILABLE"
        reason = reasons(service)["tiny.int8"]
        assert "failed to load model 'tiny.int8' version 2" in reason
        assert not service.server_ready()  # strict readiness: a model failed to load
        assert not service.model_ready("tiny.int8")
        with pytest.raises(
            ModelNotReady, match=r"'tiny\.int8' is not ready: failed to load model 'tiny\.int8' version 2"
        ):
            await service.infer(tiny_request("tiny.int8", IDS))
        assert (await service.infer(tiny_request("tiny", IDS))).model_name == "tiny.fp32"


async def test_poll_reload_under_traffic_drops_nothing(tiny_repo: Path) -> None:
    served: list[str] = []
    failures: list[BaseException] = []
    stop = asyncio.Event()

    async def client(service: Service) -> None:
        while not stop.is_set():
            try:
                served.append((await service.infer(tiny_request("tiny.fp32", IDS))).model_version)
            except Exception as e:  # noqa: BLE001 - every failure is a test failure
                failures.append(e)

    async with serving(tiny_repo, control_mode=ControlMode.POLL, poll_interval_s=0.05) as service:
        clients = [asyncio.ensure_future(client(service)) for _ in range(4)]
        await wait_for(lambda: len(served) > 20)
        add_version(tiny_repo, "tiny.fp32", 2)
        await wait_for(
            lambda: (
                served[-1:] == ["2"] and states(service) == {**states(service), ("tiny.fp32", "2"): "READY"}
            )
        )
        await wait_for(lambda: ("tiny.fp32", "1") not in states(service))  # old version drained and unloaded
        count = len(served)
        await wait_for(lambda: len(served) > count + 20)
        stop.set()
        await asyncio.gather(*clients)
    assert failures == []
    assert served[0] == "1" and served[-1] == "2" and served.index("2") > 0


async def test_poll_keeps_serving_when_the_new_version_is_broken(tiny_repo: Path) -> None:
    async with serving(tiny_repo, control_mode=ControlMode.POLL, poll_interval_s=0.05) as service:
        add_version(tiny_repo, "tiny.fp32", 2, broken=True)
        await wait_for(lambda: "failed to load" in reasons(service)["tiny.fp32"])
        assert (
            "version 2" in reasons(service)["tiny.fp32"]
            and "still serving version 1" in reasons(service)["tiny.fp32"]
        )
        assert states(service)[("tiny.fp32", "1")] == "READY"
        assert (await service.infer(tiny_request("tiny.fp32", IDS))).model_version == "1"
        assert service.server_ready()
        # a broken config is refused the same way
        config = tiny_repo / "tiny.int8" / "config.pbtxt"
        good = config.read_text()
        config.write_text("not: [valid")
        await wait_for(lambda: "not a Triton model configuration" in reasons(service)["tiny.int8"])
        assert (await service.infer(tiny_request("tiny.int8", IDS))).model_version == "1"
        config.write_text(good)
        await wait_for(lambda: reasons(service)["tiny.int8"] == "")  # the good copy clears the complaint
        # a fixed newer version is picked up
        add_version(tiny_repo, "tiny.fp32", 3)
        await wait_for(
            lambda: states(service).get(("tiny.fp32", "3")) == "READY" and reasons(service)["tiny.fp32"] == ""
        )
        assert (await service.infer(tiny_request("tiny.fp32", IDS))).model_version == "3"
        # a model removed from the repository is unloaded
        shutil.rmtree(tiny_repo / "clf.fp32")
        await wait_for(lambda: "clf.fp32" not in {e.name for e in service.repository_index()})
        with pytest.raises(ModelNotFound):
            service.model_metadata("clf.fp32")


async def test_explicit_mode_loads_and_unloads_on_request(tiny_repo: Path) -> None:
    async with serving(tiny_repo, control_mode=ControlMode.EXPLICIT, startup_models=["tiny.int8"]) as service:
        assert states(service) == {
            ("clf.fp32", ""): "UNAVAILABLE",
            ("tiny.fp32", ""): "UNAVAILABLE",
            ("tiny.int8", "1"): "READY",
        }
        assert service.server_ready()
        assert (await service.infer(tiny_request("tiny", IDS))).model_name == "tiny.int8"
        await service.load_model("tiny.fp32")
        assert (await service.infer(tiny_request("tiny", IDS))).model_name == "tiny.fp32"  # most accurate
        await service.unload_model("tiny.fp32")
        assert states(service)[("tiny.fp32", "")] == "UNAVAILABLE"
        assert (await service.infer(tiny_request("tiny", IDS))).model_name == "tiny.int8"
        await service.unload_model("tiny")  # a logical model: every variant
        with pytest.raises(ModelNotReady, match="no variant of model 'tiny' is ready"):
            await service.infer(tiny_request("tiny", IDS))
        await service.load_model("tiny")
        assert service.model_ready("tiny.fp32") and service.model_ready("tiny.int8")
        with pytest.raises(ModelNotFound, match="unknown model 'nope'"):
            await service.load_model("nope")
        with pytest.raises(Unsupported, match=r"load parameters \['config'\]"):
            await service.load_model("tiny.fp32", {"config": "{}"})
        add_version(tiny_repo, "clf.fp32", 1, broken=True)
        with pytest.raises(ModelLoadError, match=r"failed to load model 'clf\.fp32' version 1"):
            await service.load_model("clf.fp32")


async def test_explicit_reload_swaps_without_dropping_in_flight(tiny_repo: Path) -> None:
    async with serving(tiny_repo, control_mode=ControlMode.EXPLICIT, startup_models=["*"]) as service:
        in_flight = [asyncio.ensure_future(service.infer(tiny_request("tiny.fp32", IDS))) for _ in range(16)]
        await asyncio.sleep(0)
        add_version(tiny_repo, "tiny.fp32", 2)
        await service.load_model("tiny.fp32")
        versions = [r.model_version for r in await asyncio.gather(*in_flight)]
        assert versions == ["1"] * 16
        assert (await service.infer(tiny_request("tiny.fp32", IDS))).model_version == "2"
        assert [(e.version, e.state) for e in service.repository_index() if e.name == "tiny.fp32"] == [
            ("2", "READY")
        ]
