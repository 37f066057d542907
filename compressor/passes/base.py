"""What every pass shares: the model handles it takes and the one result it returns.

Each pass module has one entry point of one shape, as Olive's ``_run_for_config(model, config, output_path)``:
``run(model, config, output) -> PassResult``. ``model`` is an ONNX file (``Path``) or a ``TorchModel``;
``config`` is the pass's typed config; the pass writes one ONNX file at ``output`` and returns it with the
settings it used (what the variant card records). Passes read only what they are handed; the pipeline owns
every other file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class TorchModel:
    """A torch module with what its ONNX export needs (example inputs, output names, dynamic axes)."""

    module: Any  # torch.nn.Module; Any so that importing this module does not import torch
    example_inputs: Feeds
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]

    def with_module(self, module: Any) -> TorchModel:
        """The same export spec around another module (a pruned or distilled student)."""
        return replace(self, module=module)


@dataclass(frozen=True, slots=True)
class PassResult:
    """The ONNX file a pass wrote and the settings it used (``settings["pass"]`` names the pass)."""

    path: Path
    settings: dict[str, Any]
