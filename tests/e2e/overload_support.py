"""A load-test driver that also checks every answer: the tiny embedder's output against numpy, and the
refusal messages, so an overload test can assert that what was served was right (``loadtest`` drivers
only record the variant)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from loadtest.clients import Protocol, grpc_inputs, http_inputs
from loadtest.payloads import Payloads
from loadtest.reply import Reply, error_kind
from tests.e2e.support import tiny_batch
from tests.fixtures.tinyrepo import tiny_reference

WRONG = "wrong_answer"


def tiny_payloads(count: int = 16, length: int = 8) -> Payloads:
    requests = []
    for seed in range(count):
        ids, mask = tiny_batch(1, length, seed=seed)
        requests.append({"input_ids": ids, "attention_mask": mask})
    return Payloads(tuple(requests), ("embedding",), f"tiny, 1 row x {length} tokens")


class CheckedDriver:
    """``loadtest.clients.Driver`` over tritonclient's aio clients (HTTP binary or unary gRPC) whose
    ``Reply.error`` is ``wrong_answer`` when the embedding differs from ``tiny_reference``; the first
    words of every error message are counted in ``messages``."""

    def __init__(self, protocol: str, url: str, model: str, payloads: Payloads, timeout_s: float) -> None:
        self.payloads, self.model, self._timeout_s = payloads, model, timeout_s
        self._http = Protocol(protocol).is_http
        self.messages: Counter[str] = Counter()
        self._expected = [tiny_reference(r["input_ids"], r["attention_mask"]) for r in payloads.requests]
        self._client: Any
        if self._http:
            import tritonclient.http.aio as http_aio

            self._client = http_aio.InferenceServerClient(url, conn_limit=512, conn_timeout=timeout_s)
            self._inputs = http_inputs(payloads, binary=True)
        else:
            import tritonclient.grpc.aio as grpc_aio

            self._client = grpc_aio.InferenceServerClient(url)
            self._inputs = grpc_inputs(payloads)

    async def infer(self, index: int, parameters: dict[str, Any] | None = None) -> Reply:
        from aiohttp import ClientError
        from tritonclient.utils import InferenceServerException

        inputs, outputs = self._inputs[index % len(self._inputs)]
        options: dict[str, Any] = {"outputs": outputs, "parameters": parameters or None}
        if not self._http:
            options["client_timeout"] = self._timeout_s
        try:
            result = await self._client.infer(self.model, inputs, **options)
        except InferenceServerException as e:
            self.messages[" ".join(str(e.message()).split()[:40])] += 1
            kind = error_kind(e.status())
            return Reply(error="timeout" if kind == "deadline" and "Deadline" in str(e) else kind)
        except TimeoutError:
            return Reply(error="timeout")
        except ClientError as e:
            self.messages[type(e).__name__] += 1
            return Reply(error="connection")
        got = result.as_numpy("embedding")
        if got is None or not np.allclose(got, self._expected[index % len(self._expected)], atol=1e-5):
            return Reply(error=WRONG)
        return Reply(variant=self.model)

    async def close(self) -> None:
        await self._client.close()
