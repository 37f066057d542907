"""JSON documents of the non-inference HTTP endpoints, in the shapes Triton's HTTP server returns."""

from __future__ import annotations

from typing import Any

from gateway.core import api


def server_metadata(meta: api.ServerMetadata) -> dict[str, Any]:
    return {"name": meta.name, "version": meta.version, "extensions": list(meta.extensions)}


def _tensors(items: tuple[api.TensorMeta, ...]) -> list[dict[str, Any]]:
    return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]


def model_metadata(meta: api.ModelMetadata) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": meta.name,
        "versions": list(meta.versions),
        "platform": meta.platform,
        "inputs": _tensors(meta.inputs),
        "outputs": _tensors(meta.outputs),
    }
    if meta.parameters:
        doc["parameters"] = meta.parameters  # Open Inference Protocol's optional metadata parameters
    return doc


def _duration(d: api.DurationStat) -> dict[str, int]:
    return {"count": d.count, "ns": d.ns}


_ZERO = {"count": 0, "ns": 0}


def statistics(stats: list[api.ModelStatistics]) -> dict[str, Any]:
    return {
        "model_stats": [
            {
                "name": s.name,
                "version": s.version,
                "last_inference": s.last_inference_ms,
                "inference_count": s.inference_count,
                "execution_count": s.execution_count,
                "inference_stats": {
                    "success": _duration(s.success),
                    "fail": _duration(s.fail),
                    "queue": _duration(s.queue),
                    "compute_input": _duration(s.compute_input),
                    "compute_infer": _duration(s.compute_infer),
                    "compute_output": _duration(s.compute_output),
                    "cache_hit": dict(_ZERO),
                    "cache_miss": dict(_ZERO),
                },
                "batch_stats": [
                    {
                        "batch_size": b.batch_size,
                        "compute_input": dict(_ZERO),
                        "compute_infer": _duration(b.compute_infer),
                        "compute_output": dict(_ZERO),
                    }
                    for b in s.batch_stats
                ],
                "memory_usage": [],
            }
            for s in stats
        ]
    }


def repository_index(entries: list[api.RepositoryEntry]) -> list[dict[str, str]]:
    out = []
    for e in entries:
        doc = {"name": e.name}
        if e.version:
            doc["version"] = e.version
        doc["state"] = e.state
        if e.reason:
            doc["reason"] = e.reason
        out.append(doc)
    return out
