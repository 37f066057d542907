"""Locust users for teams that already run Locust: the same KServe v2 endpoints and payloads as
``varigate loadtest`` (Locust is not a dependency of varigate: ``pip install locust``).

    VARIGATE_LT_MODEL=minilm locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 \\
        --headless -u 16 -r 16 -t 60s KServeHttpUser
    VARIGATE_LT_GRPC=127.0.0.1:8001 locust -f loadtest/locustfile.py --headless -u 16 -t 60s KServeGrpcUser

Settings (environment): see ``loadtest.locust_support.LocustSettings.from_env``. Locust's users are a
closed loop (each waits for its answer; ``constant_pacing`` spaces them): under overload it offers less
load and its latencies hide the queueing a real open arrival process would see. Use ``varigate loadtest``
(open loop) for latency claims; use Locust to reuse existing Locust dashboards and habits.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import grpc.experimental.gevent as grpc_gevent
import tritonclient.grpc as grpcclient
from locust import HttpUser, User, constant, task
from locust.exception import StopUser
from tritonclient.utils import InferenceServerException

from loadtest.clients import grpc_inputs
from loadtest.locust_support import LocustSettings, http_requests, http_variant

grpc_gevent.init_gevent()  # before any gRPC channel exists: grpcio cooperates with Locust's gevent
SETTINGS = LocustSettings.from_env()
_PAYLOADS = SETTINGS.make_payloads()


def _close_once(client: Any) -> None:
    """Close tritonclient's gRPC client, and make its ``__del__`` close a no-op. Under gevent each
    ``grpc.Channel.close`` decrements grpcio's channel count; a second close, run by the garbage collector
    as the interpreter exits, blocked on grpcio's mutex, and Locust hung past its time limit (about one run
    in four after an unreachable server)."""
    client.close()
    client.close = lambda: None


class GrpcError(Exception):
    """A failed ``ModelInfer``, with its status and message (tritonclient's ``InferenceServerException``
    does not pass them to ``Exception``, so Locust's table showed a bare ``InferenceServerException()``)."""


def _named(e: Exception) -> Exception:
    if isinstance(e, InferenceServerException):
        return GrpcError(f"{e.status()}: {e.message()}")
    return e


class KServeHttpUser(HttpUser):
    """``POST /v2/models/<model>/infer`` with JSON or binary tensors (``VARIGATE_LT_BINARY``)."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self._requests = itertools.cycle(
            http_requests(_PAYLOADS, binary=SETTINGS.binary, parameters=SETTINGS.parameters())
        )
        self._path = f"/v2/models/{SETTINGS.model}/infer"
        self._name = f"infer {SETTINGS.model} ({'binary' if SETTINGS.binary else 'json'})"

    @task
    def infer(self) -> None:
        body, headers = next(self._requests)
        with self.client.post(
            self._path, data=body, headers=headers, name=self._name, catch_response=True
        ) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
            else:
                r.success()
                self.environment.events.request.fire(  # the variant mix, as its own row in Locust's table
                    request_type="variant",
                    name=http_variant(r.content, r.headers),
                    response_time=0,
                    response_length=0,
                    exception=None,
                    context={},
                )


class KServeGrpcUser(User):
    """``ModelInfer`` through tritonclient's gRPC client (grpcio made gevent-cooperative)."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self._client = grpcclient.InferenceServerClient(SETTINGS.grpc_url)
        self._requests = itertools.cycle(grpc_inputs(_PAYLOADS))
        try:
            ready = self._client.is_model_ready(SETTINGS.model)
        except Exception as e:  # noqa: BLE001 - nothing listens there: say where, once, and stop this user
            ready, why = False, str(_named(e))
        else:
            why = f"model {SETTINGS.model!r} is not ready there"
        if not ready:
            self.environment.events.request.fire(
                request_type="grpc",
                name=f"ModelInfer {SETTINGS.model}",
                response_time=0,
                response_length=0,
                exception=GrpcError(f"gRPC server {SETTINGS.grpc_url} (VARIGATE_LT_GRPC): {why}"),
                context={},
            )
            raise StopUser  # Locust then calls on_stop, which closes the channel once

    def on_stop(self) -> None:
        _close_once(self._client)  # while gevent's hub still runs: an open channel keeps Locust from exiting

    @task
    def infer(self) -> None:
        inputs, outputs = next(self._requests)
        start = time.perf_counter()
        error: Any = None
        try:
            self._client.infer(
                SETTINGS.model, inputs, outputs=outputs, parameters=SETTINGS.parameters() or None
            )
        except Exception as e:  # noqa: BLE001 - reported to Locust as the request's failure
            error = _named(e)
        self.environment.events.request.fire(
            request_type="grpc",
            name=f"ModelInfer {SETTINGS.model}",
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=0,
            exception=error,
            context={},
        )
