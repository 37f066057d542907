"""Schema-driven fuzzing of the real gateway's HTTP API: schemathesis loads the OpenAPI document the gateway
serves (``GET /varigate/openapi.json``) and generates requests for every operation, seeded (derandomized) and
bounded. Every answer must be below 500, conform to the document (status, content type, body), and every
4xx must be ``{"error": "<non-empty message>"}``; afterwards the gateway is live and its RSS bounded
(``rss_guard``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.protocol.openapi import OPENAPI_PATH, openapi_document
from tests.e2e.support import GatewayProcess
from tests.fuzz.conftest import MODELS, UNKNOWN_MODELS

# Examples per operation: the whole module stays around a minute on two cores.
EXAMPLES = {"infer": 150, "body": 40, "get": 20}
VERSIONS = ("1", "2", "0", "-1", "01", "latest")


def _labels() -> list[str]:
    return [
        f"{method.upper()} {path}"
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method != "parameters"
    ]


def error_body(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Every 4xx answer is Triton's ``{"error": "<message>"}`` with a message that says something (a model
    that is not ready answers its health body, ``{"name", "ready": false, "error"}``)."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"{response.status_code} body is not JSON: {response.content[:200]!r}") from None
    keys = (
        {"error", "name", "ready"}
        if case.path.endswith("/ready") and response.status_code == 400
        else {"error"}
    )
    assert isinstance(body, dict) and "error" in body and set(body) <= keys, (
        f"{response.status_code}: {body!r}"
    )
    assert isinstance(body["error"], str) and body["error"].strip(), f"empty error message in {body!r}"
    return True


def no_server_error(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """No 5xx, except the documented answers of a healthy server: 501 for what it does not support."""
    assert response.status_code < 500 or response.status_code == 501, (
        f"{response.status_code} for {case.method} {case.formatted_path}: {response.content[:300]!r}"
    )
    return True


CHECKS = [
    no_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_body,
]


@pytest.fixture(scope="module")
def api_schema(fuzz_gateway: GatewayProcess) -> Any:
    return schemathesis.openapi.from_url(f"http://{fuzz_gateway.http}{OPENAPI_PATH}", timeout=10)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def _strategy(operation: Any) -> st.SearchStrategy[Case[Any]]:
    """Generated cases; a path's model is mostly one of the repository's (or a near miss), so requests get
    past the model lookup and into decoding and validation. Bodies are also fuzzed outside the schema."""
    names = {p.name for p in operation.path_parameters}
    fixed: list[dict[str, str]] = [{}]
    if "model" in names:
        versions = VERSIONS if "version" in names else ("",)
        fixed = [
            {"model": m, **({"version": v} if v else {})} for m in MODELS + UNKNOWN_MODELS for v in versions
        ]
    elif "name" in names:
        fixed = [{"name": m} for m in MODELS + UNKNOWN_MODELS]
    modes = [GenerationMode.POSITIVE]
    if operation.body:
        modes.append(GenerationMode.NEGATIVE)
    strategies = [
        operation.as_strategy(generation_mode=mode, path_parameters=params or None)
        for mode in modes
        for params in fixed
    ]
    if names:
        strategies.append(operation.as_strategy())  # names the schema allows, outside the repository
    return st.one_of(strategies)


@pytest.mark.parametrize("label", _labels())
def test_operation(label: str, api_schema: Any, session: requests.Session, rss_guard: GatewayProcess) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, f"the served document lacks {label}"
    kind = "infer" if label.endswith("/infer") else "body" if operation.body else "get"
    base_url = f"http://{rss_guard.http}"

    @settings(
        max_examples=EXAMPLES[kind],
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(operation))
    def fuzz(case: Case[Any]) -> None:
        case.call_and_validate(base_url=base_url, session=session, checks=CHECKS, timeout=10)

    fuzz()


def test_document_matches_the_routes(fuzz_gateway: GatewayProcess, session: requests.Session) -> None:
    """The served document is this module's, and every path it lists is routed (nothing answers 404 for
    want of a route, which would say ``Not Found: <method> <path>``)."""
    base = f"http://{fuzz_gateway.http}"
    served = session.get(base + OPENAPI_PATH, timeout=10)
    assert served.status_code == 200 and served.headers["content-type"] == "application/json"
    assert served.json() == openapi_document()
    for label in _labels():
        method, path = label.split(" ", 1)
        url = base + path.replace("{model}", "tiny.fp32").replace("{version}", "1").replace("{name}", "tiny")
        r = session.request(method, url, data=b"{}", timeout=10)
        assert r.status_code < 500 or r.status_code == 501, (label, r.status_code, r.text)
        assert "Not Found: " not in r.text, (label, r.text)
