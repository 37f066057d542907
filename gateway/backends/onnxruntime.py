"""onnxruntime in the gateway's own process (the default backend).

Sessions are created and warmed up at load, never per request. A batch is one ``session.run``. Runs go to
one bounded thread pool (onnxruntime releases the GIL) sized by the layout
(``varigate.contract.execution``) so that executor workers x intra-op threads never exceed the cores this
process may use.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from gateway.backends.base import Backend, BackendLoadError, Runner
from gateway.core.config import ModelConfig, TensorConfig
from gateway.core.selection.latency_model import CALIBRATION_LENGTH
from gateway.core.types import Datatype
from varigate.contract.execution import DEFAULT_LAYOUT, choose
from varigate.contract.layout import MODEL_FILENAME

DEFAULT_MODEL_FILENAME = MODEL_FILENAME  # when config.pbtxt names no default_model_filename
PLATFORMS = frozenset({"onnxruntime_onnx", ""})
BACKENDS = frozenset({"onnxruntime", ""})

_ONNX_TYPES: dict[str, Datatype] = {
    "tensor(bool)": Datatype.BOOL,
    "tensor(uint8)": Datatype.UINT8,
    "tensor(uint16)": Datatype.UINT16,
    "tensor(uint32)": Datatype.UINT32,
    "tensor(uint64)": Datatype.UINT64,
    "tensor(int8)": Datatype.INT8,
    "tensor(int16)": Datatype.INT16,
    "tensor(int32)": Datatype.INT32,
    "tensor(int64)": Datatype.INT64,
    "tensor(float16)": Datatype.FP16,
    "tensor(float)": Datatype.FP32,
    "tensor(double)": Datatype.FP64,
    "tensor(string)": Datatype.BYTES,
}
_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def datatype_from_onnx(onnx_type: str) -> Datatype:
    try:
        return _ONNX_TYPES[onnx_type]
    except KeyError:
        raise BackendLoadError(f"ONNX type {onnx_type!r} has no KServe v2 datatype") from None


def datatype_to_onnx(datatype: Datatype) -> str:
    for onnx_type, dt in _ONNX_TYPES.items():
        if dt is datatype:
            return onnx_type
    raise BackendLoadError(f"datatype {datatype.value!r} has no ONNX tensor type")


class OnnxRuntimeRunner:
    """Runs a batch on ``session``; with ``narrow`` (the adaptive layout), ``run`` uses the single-threaded
    ``narrow`` and ``run_wide`` the wide ``session`` (the compute pool says which a batch gets). ``warmup``
    times both at batch sizes 1, 2, 4, ... up to the largest preferred one (``timings``: the shape the
    latency model starts from, measured at the layout this process serves with; about a second for
    MiniLM fp32 on 2 cores)."""

    def __init__(
        self, session: ort.InferenceSession, config: ModelConfig, narrow: ort.InferenceSession | None = None
    ) -> None:
        self.session, self.narrow, self.config = session, narrow, config
        self._outputs = [o.name for o in session.get_outputs()]
        self._bytes_inputs = {t.name for t in config.inputs if t.datatype is Datatype.BYTES}
        self.timings: dict[str, dict[int, float]] = {}

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._on(self.narrow or self.session, feeds)

    def run_wide(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._on(self.session, feeds)

    def _on(self, session: ort.InferenceSession, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        ort_feeds = {k: (_to_str(v) if k in self._bytes_inputs else v) for k, v in feeds.items()}
        results = session.run(self._outputs, ort_feeds)
        return {name: _from_ort(arr) for name, arr in zip(self._outputs, results, strict=True)}

    def warmup(self) -> None:
        batched = self.config.max_batch_size > 0
        sizes = sorted({1, self.config.max_batch_size}) if batched else [0]
        db = self.config.dynamic_batching
        top = max(db.preferred_batch_sizes, default=0) if db else 0
        top = top or min(self.config.max_batch_size, 16)
        timed = [r for r in (1, 2, 4, 8, 16, 32, 64) if r < top] + [top] if batched else [0]
        sessions = {"wide": self.session, "narrow": self.narrow} if self.narrow else {"fixed": self.session}
        for mode, session in sessions.items():
            if session is None:
                continue
            for rows in sizes:
                session.run(self._outputs, self._zeros(rows))
            for rows in timed:  # the faster of two runs: the first at a new shape also allocates
                feeds = self._zeros(rows, CALIBRATION_LENGTH)
                took = []
                for _ in range(2):
                    t0 = time.perf_counter()
                    session.run(self._outputs, feeds)
                    took.append(time.perf_counter() - t0)
                self.timings.setdefault(mode, {})[max(1, rows)] = min(took)

    def _zeros(self, rows: int, length: int = 1) -> dict[str, np.ndarray]:
        feeds = {t.name: _zeros(t, rows, length) for t in self.config.inputs if not t.optional}
        return {k: (_to_str(v) if k in self._bytes_inputs else v) for k, v in feeds.items()}

    def close(self) -> None:
        del self.session
        self.narrow = None


class OnnxRuntimeBackend(Backend):
    """Every variant's sessions share one executor: the compute pool of ``varigate.contract.execution``."""

    def __init__(
        self,
        *,
        layout: str = DEFAULT_LAYOUT,
        intra_op_threads: int = 0,
        inter_op_threads: int = 1,
        executor_workers: int | None = None,
        graph_optimization_level: str = "all",
        allow_spinning: bool | None = None,
        cores: int | None = None,
    ) -> None:
        try:
            chosen = choose(
                layout,
                cores=cores,
                intra_op_threads=intra_op_threads,
                executor_workers=executor_workers or 0,
                spinning=allow_spinning,
            )
        except ValueError as e:
            raise BackendLoadError(str(e)) from None
        if graph_optimization_level not in _OPT_LEVELS:
            raise BackendLoadError(
                f"graph_optimization_level {graph_optimization_level!r} is not one of {sorted(_OPT_LEVELS)}"
            )
        self.layout = chosen
        self.intra_op_threads, self.inter_op_threads = chosen.intra_op_threads, inter_op_threads
        self.workers = chosen.executor_workers
        self._opt_level = _OPT_LEVELS[graph_optimization_level]
        self._spinning = chosen.spinning
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="onnxruntime")

    @property
    def default_instances(self) -> int:
        return self.layout.instances

    @property
    def executor(self) -> Executor:
        return self._executor

    @property
    def pool_shape(self) -> tuple[int, bool]:
        return self.workers, self.layout.adaptive

    def load(self, model_dir: Path, config: ModelConfig) -> Runner:
        if config.platform not in PLATFORMS or config.backend not in BACKENDS:
            raise BackendLoadError(
                f"model {config.name!r} has platform {config.platform!r} / backend {config.backend!r}; "
                "the onnxruntime backend serves platform 'onnxruntime_onnx'"
            )
        path = model_dir / (config.default_model_filename or DEFAULT_MODEL_FILENAME)
        if not path.is_file():
            raise BackendLoadError(f"model {config.name!r}: no model file at {path}")
        session = self._session(config, path, self.intra_op_threads)
        _check_signature(config, session, path)
        if not self.layout.adaptive:
            return OnnxRuntimeRunner(session, config)
        narrow = self._session(config, path, self.layout.narrow_threads)
        return OnnxRuntimeRunner(session, config, narrow)

    def _session(self, config: ModelConfig, path: Path, threads: int) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = self.inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = self._opt_level
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self._spinning else "0")
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise BackendLoadError(f"model {config.name!r}: onnxruntime cannot load {path}: {e}") from None


def _check_signature(config: ModelConfig, session: ort.InferenceSession, path: Path) -> None:
    declared: dict[str, Datatype] = {t.name: t.datatype for t in config.inputs}
    declared.update({t.name: t.datatype for t in config.outputs})
    actual: dict[str, Any] = {a.name: a for a in (*session.get_inputs(), *session.get_outputs())}
    for name, datatype in declared.items():
        arg = actual.get(name)
        if arg is None:
            raise BackendLoadError(
                f"model {config.name!r}: config.pbtxt names {name!r}, which {path} does not have"
            )
        found = datatype_from_onnx(arg.type)
        if found is not datatype:
            raise BackendLoadError(
                f"model {config.name!r}: {name!r} is {datatype.value} in config.pbtxt but {found.value} in "
                f"{path}"
            )
    for arg in session.get_inputs():
        if arg.name not in declared:
            raise BackendLoadError(
                f"model {config.name!r}: {path} needs input {arg.name!r} that config.pbtxt lacks"
            )


def _zeros(t: TensorConfig, rows: int, length: int = 1) -> np.ndarray:
    dims = tuple(length if d == -1 else d for d in t.dims)
    shape = ((rows,) if rows else ()) + dims
    if t.datatype is Datatype.BYTES:
        return np.full(shape, b"", dtype=object)
    return np.zeros(shape, dtype=t.datatype.numpy)


def _to_str(arr: np.ndarray) -> np.ndarray:
    """BYTES arrive as objects holding ``bytes``; onnxruntime's string tensors hold ``str``."""
    out: np.ndarray = np.vectorize(lambda b: b.decode() if isinstance(b, bytes) else str(b), otypes=[object])(
        arr
    )
    return out


def _from_ort(arr: Any) -> np.ndarray:
    out: np.ndarray = np.asarray(arr)
    if out.dtype.kind in ("U", "O"):
        out = np.vectorize(lambda s: s.encode() if isinstance(s, str) else s, otypes=[object])(out)
    return out
