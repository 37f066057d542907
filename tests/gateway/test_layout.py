"""The execution layout (``varigate.contract.execution``) and what it decides: the cores split between
onnxruntime's threads and the compute pool's workers, the adaptive pool (a batch alone on every core,
batches under load one core each, never more threads than cores), and the instances of a config.pbtxt
that declares no ``instance_group`` (shown by the config endpoint, as Triton's auto-completed config is)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gateway.backends.base import BackendLoadError
from gateway.backends.onnxruntime import OnnxRuntimeBackend
from gateway.core.batching.pool import NARROW, WIDE, ComputePool
from varigate.contract.execution import choose

from .conftest import serving, tiny_request


def test_the_default_is_adaptive_on_every_core() -> None:
    layout = choose(cores=4)
    assert layout.name == "adaptive" and layout.adaptive
    assert (layout.intra_op_threads, layout.narrow_threads, layout.executor_workers, layout.instances) == (
        4,
        1,
        4,
        4,
    )
    assert "4 intra-op thread(s) for a batch alone, 1 for each of up to 4 at once" in layout.describe()


def test_wide_split_and_one_core() -> None:
    wide = choose("wide", cores=4)
    assert (wide.intra_op_threads, wide.executor_workers, wide.instances, wide.spinning) == (4, 1, 1, False)
    assert choose("wide-spin", cores=2).spinning is True
    split = choose("split", cores=3)
    assert (split.intra_op_threads, split.executor_workers, split.instances) == (1, 3, 3)
    alone = choose(cores=1)
    assert not alone.adaptive and (alone.intra_op_threads, alone.executor_workers) == (1, 1)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"intra_op_threads": 2}, (2, 2)),  # workers fill the rest of the cores
        ({"executor_workers": 2}, (2, 2)),  # threads share the cores between the workers
        ({"intra_op_threads": 1, "executor_workers": 1}, (1, 1)),  # both given: as given
    ],
)
def test_explicit_settings_override_the_layout(options: dict[str, int], expected: tuple[int, int]) -> None:
    given = {"intra_op_threads": 0, "executor_workers": 0, **options}
    layout = choose(
        cores=4, intra_op_threads=given["intra_op_threads"], executor_workers=given["executor_workers"]
    )
    assert not layout.adaptive  # explicit threads or workers: the fixed layout they describe
    assert (layout.intra_op_threads, layout.executor_workers) == expected
    assert layout.instances == layout.executor_workers
    assert choose("wide", cores=4, spinning=True).spinning is True


def test_oversubscription_and_unknown_layouts_are_refused() -> None:
    with pytest.raises(ValueError, match=r"executor_workers 3 x intra_op_threads 2 .* the 4 cores"):
        choose(cores=4, intra_op_threads=2, executor_workers=3)
    with pytest.raises(ValueError, match=r"layout 'pool' is not one of adaptive, wide, wide-spin, split"):
        choose("pool")
    with pytest.raises(BackendLoadError, match="layout 'pool'"):
        OnnxRuntimeBackend(layout="pool")


async def test_the_pool_gives_a_lone_batch_everything_and_loaded_batches_one_core_each() -> None:
    pool = ComputePool(2, adaptive=True)
    first = await pool.take(alone=True)
    assert first.mode == WIDE and pool.free == 0
    second = asyncio.ensure_future(pool.take(alone=True))
    await asyncio.sleep(0.05)
    assert not second.done()  # the wide batch holds every core: the next one waits ...
    assert pool.try_take() is None  # ... and a scheduler cannot jump the queue
    pool.give_back(first)
    grant = await second
    assert grant.mode == WIDE  # ... and, having waited alone, has the pool again
    third = pool.try_take(alone=False)
    assert third is None  # it holds both cores
    pool.give_back(grant)
    a, b = pool.try_take(alone=False), pool.try_take(alone=True)
    assert a is not None and b is not None and (a.mode, b.mode) == (NARROW, NARROW)  # side by side
    assert pool.try_take(alone=True) is None
    pool.give_back(a)
    pool.give_back(b)
    assert pool.idle() and pool.runs == {WIDE: 2, NARROW: 2, "fixed": 0, "remote": 0}


async def test_the_pool_never_hands_out_more_cores_than_it_has() -> None:
    pool = ComputePool(2, adaptive=True)
    held, most = [0], [0]

    async def batch(i: int) -> None:
        grant = await pool.take(alone=i % 3 == 0)
        held[0] += grant.slots
        most[0] = max(most[0], held[0])
        await asyncio.sleep(0.001)
        held[0] -= grant.slots
        pool.give_back(grant)

    await asyncio.gather(*(batch(i) for i in range(40)))
    assert most[0] <= 2 and sum(pool.runs.values()) == 40
    assert pool.runs[NARROW] > 0  # batches that met others ran on one core
    fixed = ComputePool(3)
    grants = [fixed.try_take(alone=True) for _ in range(4)]
    assert [g.mode if g else None for g in grants] == ["fixed", "fixed", "fixed", None]


async def test_the_adaptive_backend_answers_alike_alone_and_under_load(build: Callable[..., Path]) -> None:
    repo = build(instance_count=0, max_queue_delay_us=0)
    ids = np.array([[1, 2, 3, 4]], dtype=np.int64)
    async with serving(repo, backend_options={"cores": 2}) as s:
        alone = (await s.infer(tiny_request("tiny.fp32", ids))).outputs[0].data
        loaded = await asyncio.gather(*(s.infer(tiny_request("tiny.fp32", ids)) for _ in range(32)))
        groups = s.model_config("tiny.fp32")["instance_group"]
    assert [(g.get("kind"), g.get("count")) for g in groups] == [("KIND_CPU", 2)]
    for r in loaded:
        np.testing.assert_allclose(r.outputs[0].data, alone, rtol=1e-6)


async def test_a_config_without_instance_group_gets_the_layouts_instances(
    build: Callable[..., Path],
) -> None:
    repo = build(instance_count=0)
    options = {"layout": "split", "cores": 2}
    async with serving(repo, backend_options=options) as service:
        groups = service.model_config("tiny.fp32")["instance_group"]
        assert [(g.get("kind"), g.get("count")) for g in groups] == [("KIND_CPU", 2)]
    declared = build(instance_count=1)
    async with serving(declared, backend_options=options) as service:
        groups = service.model_config("tiny.fp32")["instance_group"]
        assert [(g.get("kind"), g.get("count")) for g in groups] == [("KIND_CPU", 1)]


def test_the_backend_serves_with_its_layout() -> None:
    backend = OnnxRuntimeBackend(layout="split", cores=2)
    try:
        assert (backend.intra_op_threads, backend.workers, backend.default_instances) == (1, 2, 2)
        started = time.monotonic()
        assert backend.executor.submit(lambda: 1).result(5) == 1 and time.monotonic() - started < 5
    finally:
        backend.close()
