"""The execution layout (``varigate.contract.execution``) and what it decides: the cores split between
onnxruntime's threads and the compute pool's workers, the adaptive pool (a batch alone on every core,
batches under load one core each, never more threads than cores), and the instances of a config.pbtxt
that declares no ``instance_group`` (shown by the config endpoint, as Triton's auto-completed config is)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gateway.backends.base import BackendLoadError
from gateway.backends.cores import Cores
from gateway.backends.onnxruntime import OnnxRuntimeBackend
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


def test_cores_give_a_lone_batch_everything_and_loaded_batches_one_each() -> None:
    cores = Cores(2)
    with cores.hold() as wide:
        assert wide
        entered = threading.Event()
        seen: list[bool] = []

        def second() -> None:
            with cores.hold() as w:
                seen.append(w)
                entered.set()

        t = threading.Thread(target=second)
        t.start()
        assert not entered.wait(0.2)  # the wide batch holds every core: the next one waits ...
    t.join(5)
    assert seen == [False]  # ... and, having waited, runs on one core
    with cores.hold() as first:
        assert first  # the pool is idle again
    assert (cores.wide_runs, cores.narrow_runs) == (2, 1)


def test_cores_never_hand_out_more_threads_than_cores() -> None:
    cores, lock = Cores(2), threading.Lock()
    held, most = [0], [0]

    def batch() -> None:
        with cores.hold() as wide:
            with lock:
                held[0] += 2 if wide else 1
                most[0] = max(most[0], held[0])
            time.sleep(0.002)
            with lock:
                held[0] -= 2 if wide else 1

    threads = [threading.Thread(target=batch) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert most[0] <= 2 and cores.wide_runs + cores.narrow_runs == 40
    assert cores.narrow_runs > 0  # batches that met others ran on one core


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
