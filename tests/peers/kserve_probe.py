"""KServe's own v2 SDK against a server, in a process of its own: kserve's compiled protos register the
same ``inference.*`` names as tritonclient's, so the two cannot share a process.

``python -m tests.peers.kserve_probe HTTP_HOSTPORT GRPC_HOSTPORT MODEL [MODEL ...]`` prints one JSON object:
server live/ready and, per model, ready over REST and gRPC (a gRPC error is reported as its code)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import grpc
from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig


async def probe(http: str, grpc_target: str, models: list[str]) -> dict[str, Any]:
    base = f"http://{http}"
    rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=10))
    g = InferenceGRPCClient(grpc_target, timeout=10)
    out: dict[str, Any] = {}
    try:
        out["rest_live"] = await rest.is_server_live(base)
        out["rest_ready"] = await rest.is_server_ready(base)
        out["grpc_live"] = await g.is_server_live()
        out["grpc_ready"] = await g.is_server_ready()
        for model in models:
            out[f"rest_model_ready:{model}"] = await rest.is_model_ready(base, model)
            try:
                out[f"grpc_model_ready:{model}"] = await g.is_model_ready(model)
            except grpc.aio.AioRpcError as e:
                out[f"grpc_model_ready:{model}"] = e.code().name
    finally:
        await rest.close()
        await g.close()
    return out


def main() -> None:
    http, grpc_target, *models = sys.argv[1:]
    print(json.dumps(asyncio.run(probe(http, grpc_target, models))))


if __name__ == "__main__":
    main()
