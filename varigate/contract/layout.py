"""The model repository's layout, as Triton reads it and varigate writes it.

The compressor writes it (``compressor/repository.py``, ``compressor/pipeline.py``); the gateway reads it
(``gateway/repository.py``, ``gateway/backends/onnxruntime.py``); the benchmarks read and link it
(``loadtest/benchmarks``). Standard library only::

    <repository>/
      varigate_build.json            the compressor's build report (BUILD_REPORT_FILENAME)
      <logical>.<variant>/           one Triton model per variant (model_name)
        config.pbtxt                 CONFIG_FILENAME
        varigate_card.json           the variant card (CARD_FILENAME, see ``card``)
        1/model.onnx                 VERSION_DIR / MODEL_FILENAME
"""

from __future__ import annotations

from pathlib import Path

CONFIG_FILENAME = "config.pbtxt"
VERSION_DIR = "1"  # the one version directory the compressor writes
MODEL_FILENAME = "model.onnx"
CARD_FILENAME = "varigate_card.json"
BUILD_REPORT_FILENAME = "varigate_build.json"
MODEL_NAME_SEPARATOR = "."


def model_name(logical: str, variant: str) -> str:
    """The Triton model name of one variant: ``model_name("minilm", "int8") == "minilm.int8"``."""
    return f"{logical}{MODEL_NAME_SEPARATOR}{variant}"


def model_file(model_dir: Path) -> Path:
    """``<model_dir>/1/model.onnx``: the ONNX file of the version the compressor writes."""
    return model_dir / VERSION_DIR / MODEL_FILENAME
