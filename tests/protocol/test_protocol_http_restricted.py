"""Restricted APIs over HTTP, as Triton's --http-restricted-api: a header key and value per API group."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import numpy as np
import pytest
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from gateway.protocol.http import HttpOptions
from gateway.protocol.restricted import Restrictions
from tests.protocol.fakes import FakeService


@pytest.fixture
def http_options() -> HttpOptions:
    rules = Restrictions.parse(["model-repository,statistics,model-config:admin-key=s3cret"])
    return HttpOptions(max_body_bytes=1 << 20, restrictions=rules)


async def test_admin_apis_need_the_header(http_url: str, fake: FakeService) -> None:
    admin = {"admin-key": "s3cret"}

    def calls() -> list[object]:
        out: list[object] = []
        with th.InferenceServerClient(http_url) as c:
            attempts: list[Callable[[], object]] = [
                lambda: c.load_model("echo"),
                lambda: c.get_inference_statistics(),
                lambda: c.get_model_config("echo"),
            ]
            for fn in attempts:
                try:
                    fn()
                    out.append("ok")
                except InferenceServerException as e:
                    out.append((e.status(), e.message()))
            c.load_model("echo", headers=admin)
            out.append(c.get_model_repository_index(headers=admin))
            out.append(c.get_model_config("echo", headers=admin)["max_batch_size"])
            x = th.InferInput("x", [1], "FP32")
            x.set_data_from_numpy(np.ones(1, np.float32))
            out.append(c.infer("echo", [x]).as_numpy("OUT_x").tolist())  # inference is not restricted
        return out

    got = await asyncio.to_thread(calls)
    refused = ("403", "This API is restricted, expecting header 'admin-key'")
    assert got[:3] == [refused, refused, refused]
    assert got[3][0]["name"] == "echo.v"  # type: ignore[index]
    assert got[4] == 8 and got[5] == [1.0]
    assert fake.repository_calls == [("load", "echo", None)]  # only the permitted load ran
    async with httpx.AsyncClient(base_url=f"http://{http_url}") as raw:
        wrong = await raw.post("/v2/repository/models/echo/unload", headers={"admin-key": "guess"})
        assert wrong.status_code == 403 and wrong.json()["error"] == refused[1]
        assert (await raw.get("/v2/health/ready")).status_code == 200
    assert fake.repository_calls == [("load", "echo", None)]
