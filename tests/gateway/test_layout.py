"""The execution layout (``varigate.contract.execution``) and what it decides: the cores split between
onnxruntime's threads and the compute pool's workers, and the instances of a config.pbtxt that declares no
``instance_group`` (shown by the config endpoint, as Triton's auto-completed config is)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.backends.base import BackendLoadError
from gateway.backends.onnxruntime import OnnxRuntimeBackend
from varigate.contract.execution import choose

from .conftest import serving


def test_the_default_pool_gives_one_batch_every_core() -> None:
    layout = choose(cores=4)
    assert (layout.intra_op_threads, layout.executor_workers, layout.instances, layout.spinning) == (
        4,
        1,
        1,
        False,
    )
    assert "1 worker(s) x 4 intra-op thread(s) on 4 core(s)" in layout.describe()


def test_split_runs_one_batch_per_core() -> None:
    layout = choose("split", cores=3)
    assert (layout.intra_op_threads, layout.executor_workers, layout.instances) == (1, 3, 3)


def test_pool_spin_keeps_onnxruntimes_spinning() -> None:
    assert choose("pool-spin", cores=2).spinning is True


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
    assert (layout.intra_op_threads, layout.executor_workers) == expected
    assert layout.instances == layout.executor_workers
    assert choose(cores=4, spinning=True).spinning is True


def test_oversubscription_and_unknown_layouts_are_refused() -> None:
    with pytest.raises(ValueError, match=r"executor_workers 3 x intra_op_threads 2 .* the 4 cores"):
        choose(cores=4, intra_op_threads=2, executor_workers=3)
    with pytest.raises(ValueError, match=r"layout 'wide' is not one of pool, pool-spin, split"):
        choose("wide")
    with pytest.raises(BackendLoadError, match="layout 'wide'"):
        OnnxRuntimeBackend(layout="wide")


def test_the_backend_serves_with_its_layout() -> None:
    backend = OnnxRuntimeBackend(layout="split", cores=2)
    try:
        assert (backend.intra_op_threads, backend.workers, backend.default_instances) == (1, 2, 2)
        assert backend.executor._max_workers == 2  # type: ignore[attr-defined]
    finally:
        backend.close()


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
