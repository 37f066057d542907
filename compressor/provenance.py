"""Where a variant came from: the build key that decides whether it is up to date, and the environment
recorded in its card."""

from __future__ import annotations

import hashlib
import json
import platform
from typing import Any

import numpy as np

from compressor.config import BuildConfig
from compressor.cpu import cpu_flags
from compressor.recipes import Recipe
from compressor.source import Source

COMPRESSOR_VERSION = "1"


def environment() -> dict[str, Any]:
    import onnx
    import onnxruntime

    have = cpu_flags()
    flags = sorted(f for f in have if f.startswith(("avx", "fma", "sse4", "amx")) or "vnni" in f)
    env: dict[str, Any] = {
        "cpu_flags": flags,
        "vnni": any("vnni" in f for f in flags),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "compressor": COMPRESSOR_VERSION,
    }
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:
        pass
    return env


def build_key(source: Source, recipe: Recipe, config: BuildConfig, upstream: str = "") -> str:
    """Hash of what the variant is built from: the source, the recipe's key settings, its gate and the
    upstream variant's build key (``""`` for the reference)."""
    blob = json.dumps(
        {
            "source": source.fingerprint,
            "variant": recipe.variant,
            "settings": recipe.key_settings(source, config),
            "gate": recipe.gate(config),
            "upstream": upstream,
            "compressor": COMPRESSOR_VERSION,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]
