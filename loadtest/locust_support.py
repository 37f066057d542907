"""What ``locustfile.py`` needs, without importing Locust (so it is testable where Locust is absent).

Request bodies are made by tritonclient itself (``InferenceServerClient.generate_request_body``: JSON or
the binary tensor extension) from the same payloads the load tester uses; responses are read with
``parse_response_body``. Settings come from environment variables (Locust owns the command line).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from loadtest import payloads as payload_kinds
from loadtest.clients import http_inputs
from loadtest.payloads import Payloads
from varigate.contract.keys import SLO_PARAMETER, VARIANT_HEADER, VARIANT_PARAMETER


@dataclass(frozen=True, slots=True)
class LocustSettings:
    model: str
    binary: bool
    grpc_url: str
    slo_ms: int | None
    data: str
    seq_len: int | None
    payloads: int

    @staticmethod
    def from_env(env: dict[str, str] | None = None) -> LocustSettings:
        """``VARIGATE_LT_MODEL`` (minilm), ``VARIGATE_LT_BINARY`` (1), ``VARIGATE_LT_GRPC`` (127.0.0.1:8001),
        ``VARIGATE_LT_SLO_MS``, ``VARIGATE_LT_DATA`` (sentences | digits | a ``.npz`` file of input arrays,
        one row a request), ``VARIGATE_LT_SEQ_LEN``, ``VARIGATE_LT_PAYLOADS`` (64)."""
        e = os.environ if env is None else env
        slo, seq = e.get("VARIGATE_LT_SLO_MS"), e.get("VARIGATE_LT_SEQ_LEN")
        return LocustSettings(
            model=e.get("VARIGATE_LT_MODEL", "minilm"),
            binary=e.get("VARIGATE_LT_BINARY", "1") not in ("0", "false", "no"),
            grpc_url=e.get("VARIGATE_LT_GRPC", "127.0.0.1:8001"),
            slo_ms=int(slo) if slo else None,
            data=e.get("VARIGATE_LT_DATA", "sentences"),
            seq_len=int(seq) if seq else None,
            payloads=int(e.get("VARIGATE_LT_PAYLOADS", "64")),
        )

    def parameters(self) -> dict[str, Any]:
        return {SLO_PARAMETER: self.slo_ms} if self.slo_ms else {}

    def make_payloads(self) -> Payloads:
        if self.data == "digits":
            return payload_kinds.digits(self.payloads)
        if self.data.endswith(".npz"):
            return payload_kinds.npz(self.data)
        return payload_kinds.sentences(self.payloads, seq_len=self.seq_len)


def http_requests(
    p: Payloads, *, binary: bool, parameters: dict[str, Any] | None = None
) -> list[tuple[bytes, dict[str, str]]]:
    """(body, headers) per payload, for ``POST /v2/models/<model>/infer``."""
    import tritonclient.http as httpclient

    out = []
    for inputs, outputs in http_inputs(p, binary=binary):
        body, json_size = httpclient.InferenceServerClient.generate_request_body(
            inputs, outputs=outputs, parameters=parameters or None
        )
        headers = {
            "Content-Type": "application/octet-stream" if json_size is not None else "application/json"
        }
        if json_size is not None:
            headers["Inference-Header-Content-Length"] = str(json_size)
        out.append((body if isinstance(body, bytes) else body.encode(), headers))
    return out


def http_variant(body: bytes, headers: Any) -> str:
    """The serving variant: the ``varigate-variant`` header, else the response's parameters / model name."""
    import tritonclient.http as httpclient

    if headers.get(VARIANT_HEADER):
        return str(headers[VARIANT_HEADER])
    length = headers.get("Inference-Header-Content-Length")
    result = httpclient.InferenceServerClient.parse_response_body(
        body, header_length=int(length) if length else None
    )
    response = result.get_response()
    return str((response.get("parameters") or {}).get(VARIANT_PARAMETER) or response.get("model_name", ""))
