"""Protocol drivers: one request = one real KServe v2 / Triton client call, with pre-built inputs.

- ``http-json`` / ``http-binary``: ``tritonclient.http.aio`` with JSON tensors or the binary tensor
  extension (inputs and outputs).
- ``grpc``: ``tritonclient.grpc.aio`` unary ``ModelInfer`` (``raw_input_contents``).
- ``grpc-stream``: one bidirectional ``ModelStreamInfer`` stream (``loadtest.grpc_stream``).

Every call returns a ``Reply`` (``loadtest.reply``): the variant that served it
(``parameters["varigate_variant"]``, else the response's model name: any Triton server works) or the kind
of error. Inputs are built once per payload,
so the per-request cost is the client library's body assembly and the I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from typing import Protocol as TypingProtocol

from loadtest.payloads import Payloads
from loadtest.reply import Reply, error_kind, grpc_variant, http_variant


class Protocol(StrEnum):
    HTTP_JSON = "http-json"
    HTTP_BINARY = "http-binary"
    GRPC = "grpc"
    GRPC_STREAM = "grpc-stream"

    @property
    def is_http(self) -> bool:
        return self in (Protocol.HTTP_JSON, Protocol.HTTP_BINARY)


class Driver(TypingProtocol):
    payloads: Payloads

    async def infer(self, index: int, parameters: dict[str, Any] | None = None) -> Reply: ...

    async def close(self) -> None: ...


def http_inputs(p: Payloads, *, binary: bool) -> list[tuple[list[Any], list[Any] | None]]:
    """tritonclient HTTP inputs and requested outputs for every payload, built once."""
    import tritonclient.http as httpclient

    out = []
    for req in p.requests:
        inputs = []
        for name, array in req.items():
            inp = httpclient.InferInput(name, list(array.shape), Payloads.datatype(array))
            inp.set_data_from_numpy(array, binary_data=binary)
            inputs.append(inp)
        out.append(
            (inputs, [httpclient.InferRequestedOutput(o, binary_data=binary) for o in p.outputs] or None)
        )
    return out


def grpc_inputs(p: Payloads) -> list[tuple[list[Any], list[Any] | None]]:
    """tritonclient gRPC inputs (raw contents) and requested outputs for every payload, built once."""
    import tritonclient.grpc as grpcclient

    out = []
    for req in p.requests:
        inputs = []
        for name, array in req.items():
            inp = grpcclient.InferInput(name, list(array.shape), Payloads.datatype(array))
            inp.set_data_from_numpy(array)
            inputs.append(inp)
        out.append((inputs, [grpcclient.InferRequestedOutput(o) for o in p.outputs] or None))
    return out


class HttpDriver:
    def __init__(
        self,
        url: str,
        model: str,
        payloads: Payloads,
        *,
        binary: bool,
        timeout_s: float,
        version: str = "",
        connections: int = 256,
    ) -> None:
        import tritonclient.http.aio as aioclient

        self.payloads, self.model, self.version = payloads, model, version
        self._client = aioclient.InferenceServerClient(url, conn_limit=connections, conn_timeout=timeout_s)
        self._prebuilt = http_inputs(payloads, binary=binary)

    async def infer(self, index: int, parameters: dict[str, Any] | None = None) -> Reply:
        from aiohttp import ClientError
        from tritonclient.utils import InferenceServerException

        inputs, outputs = self._prebuilt[index % len(self._prebuilt)]
        try:
            result = await self._client.infer(
                self.model, inputs, model_version=self.version, outputs=outputs, parameters=parameters or None
            )
        except InferenceServerException as e:
            return Reply(error=error_kind(e.status()))
        except TimeoutError:
            return Reply(error="timeout")
        except ClientError:
            return Reply(error="connection")
        return Reply(variant=http_variant(result.get_response()))

    async def close(self) -> None:
        await self._client.close()


class GrpcDriver:
    def __init__(
        self, url: str, model: str, payloads: Payloads, *, timeout_s: float, version: str = ""
    ) -> None:
        import tritonclient.grpc.aio as aioclient

        self.payloads, self.model, self.version, self._timeout_s = payloads, model, version, timeout_s
        self._client = aioclient.InferenceServerClient(url)
        self._prebuilt = grpc_inputs(payloads)

    async def infer(self, index: int, parameters: dict[str, Any] | None = None) -> Reply:
        from tritonclient.utils import InferenceServerException

        inputs, outputs = self._prebuilt[index % len(self._prebuilt)]
        try:
            result = await self._client.infer(
                self.model,
                inputs,
                model_version=self.version,
                outputs=outputs,
                client_timeout=self._timeout_s,
                parameters=parameters or None,
            )
        except InferenceServerException as e:
            kind = error_kind(e.status())
            return Reply(error="timeout" if kind == "deadline" and "Deadline" in str(e) else kind)
        return Reply(variant=grpc_variant(result.get_response()))

    async def close(self) -> None:
        await self._client.close()


def make_driver(
    protocol: Protocol | str,
    url: str,
    model: str,
    payloads: Payloads,
    *,
    timeout_s: float = 30.0,
    version: str = "",
    connections: int = 256,
) -> Driver:
    protocol = Protocol(protocol)
    if protocol.is_http:
        return HttpDriver(
            url,
            model,
            payloads,
            binary=protocol is Protocol.HTTP_BINARY,
            timeout_s=timeout_s,
            version=version,
            connections=connections,
        )
    if protocol is Protocol.GRPC:
        return GrpcDriver(url, model, payloads, timeout_s=timeout_s, version=version)
    from loadtest.grpc_stream import GrpcStreamDriver

    return GrpcStreamDriver(url, model, payloads, timeout_s=timeout_s, version=version)
