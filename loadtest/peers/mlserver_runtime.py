"""An MLServer custom runtime that runs a Triton-style variant's ``model.onnx`` with onnxruntime.

It runs inside MLServer's own venv (``scripts/peers/mlserver.sh``), so it imports nothing of varigate: only
the standard library, numpy, onnxruntime and mlserver. ``loadtest.peers.mlserver`` writes the
model-settings that name it (``implementation: loadtest.peers.mlserver_runtime.OnnxRuntimeModel``) and puts
the repository root on ``PYTHONPATH``. Not ``loadtest/peers`` itself: its ``mlserver.py`` would shadow the
``mlserver`` package.

Model-settings ``parameters.extra``: ``intra_op_threads`` (default 1) and ``allow_spinning`` (default
true), with the defaults of varigate's onnxruntime backend.

Adaptive batching (``max_batch_size`` requests, ``max_batch_time`` seconds) merges requests before
``predict`` by concatenating each input's flat data and giving the merged input the *first* request's shape
with the batch sizes summed (``mlserver.batching.requests``, 1.7.1). It never pads. So requests batched
together must agree on every dimension but the first:

- different sequence lengths whose total does not fill the first request's shape: the merged input's data
  does not match its shape, and every request in that batch fails (this runtime says so by name,
  ``RaggedBatch``, instead of numpy's "cannot reshape");
- three or more lengths that happen to add up (``[1, 4] + [1, 5] + [1, 3]`` holds 12 = 3 x 4 values): the
  data fits the shape, rows straddle requests, and the answers are silently wrong. Nothing in the merged
  request shows the boundaries, so no runtime can catch this.

Clients of this peer therefore send one sequence length (pad to a fixed length, as ``loadtest --seq-len``
does), or batching is off (a config.pbtxt without ``dynamic_batching``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnxruntime as ort
from mlserver import MLModel, log, register  # type: ignore[import-not-found]
from mlserver.codecs import NumpyCodec  # type: ignore[import-not-found]
from mlserver.errors import InferenceError  # type: ignore[import-not-found]
from mlserver.types import (  # type: ignore[import-not-found]
    InferenceRequest,
    InferenceResponse,
    RequestInput,
)
from mlserver.utils import get_model_uri  # type: ignore[import-not-found]

BATCH_ROWS_METRIC = "onnx_batch_rows"  # a histogram of the rows each predict() ran (batching observed)


class RaggedBatch(InferenceError):  # type: ignore[misc]
    """The merged input's values do not fill its shape: requests of different lengths were batched."""


class OnnxRuntimeModel(MLModel):  # type: ignore[misc]
    """One onnxruntime session per model, created in ``load``; ``predict`` runs the whole merged batch."""

    async def load(self) -> bool:
        extra: dict[str, Any] = dict((self.settings.parameters and self.settings.parameters.extra) or {})
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(extra.get("intra_op_threads", 1))
        options.inter_op_num_threads = 1
        spinning = str(extra.get("allow_spinning", "true")).lower() in ("1", "true", "yes")
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        path = await get_model_uri(self.settings)
        self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._outputs = [o.name for o in self._session.get_outputs()]
        register(BATCH_ROWS_METRIC, "Rows in each batch onnxruntime ran (after adaptive batching)")
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: _decode(i) for i in payload.inputs}
        if missing := self._inputs - feeds.keys():
            raise InferenceError(f"model {self.name} needs inputs {sorted(missing)}, got {sorted(feeds)}")
        if unknown := feeds.keys() - self._inputs:
            raise InferenceError(f"model {self.name} has no inputs {sorted(unknown)}")
        names = [o.name for o in payload.outputs] if payload.outputs else self._outputs
        if unknown_out := set(names) - set(self._outputs):
            raise InferenceError(f"model {self.name} has no outputs {sorted(unknown_out)}")
        values = self._session.run(names, feeds)
        log(**{BATCH_ROWS_METRIC: int(next(iter(feeds.values())).shape[0])})
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output(n, np.asarray(v)) for n, v in zip(names, values, strict=True)],
        )


def _decode(request_input: RequestInput) -> np.ndarray:
    data = getattr(request_input.data, "root", request_input.data)
    want = math.prod(request_input.shape)
    flat = isinstance(data, list) and not (data and isinstance(data[0], list))  # JSON may nest rows
    if request_input.datatype != "BYTES" and flat and len(data) != want:
        raise RaggedBatch(
            f"input {request_input.name}: {len(data)} values for shape {request_input.shape} ({want}); "
            "MLServer's adaptive batching concatenated requests of different shapes (it does not pad)"
        )
    array: np.ndarray = NumpyCodec.decode_input(request_input)
    return array
