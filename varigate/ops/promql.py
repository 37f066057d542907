"""Prometheus's HTTP API, as far as the tests and the docs' images read it: instant and range queries.

Standard library only (``urllib``): ``Prometheus(url).query(expr)`` returns the series of an instant query,
``query_range`` those of a range query; an error answer (bad PromQL, unknown function) raises
``PrometheusError`` with Prometheus's own message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

TIMEOUT_S = 10.0


class PrometheusError(RuntimeError):
    """Prometheus answered with an error (its ``errorType`` and ``error``)."""


@dataclass(frozen=True, slots=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (unix seconds, value); one point for an instant query


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _get(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:
                body = json.load(reply)
        except urllib.error.HTTPError as e:  # 400/422 carry Prometheus's JSON error body
            body = json.load(e)
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType')}: {body.get('error')} (query {params})")
        return body["data"]

    def query(self, expr: str, at_s: float | None = None) -> list[Series]:
        params = {"query": expr} if at_s is None else {"query": expr, "time": f"{at_s:.3f}"}
        data = self._get("/api/v1/query", **params)
        if data["resultType"] != "vector":
            raise PrometheusError(f"{expr!r} gives a {data['resultType']}, not a vector")
        return [Series(r["metric"], [(float(r["value"][0]), float(r["value"][1]))]) for r in data["result"]]

    def query_range(self, expr: str, start_s: float, end_s: float, step_s: float) -> list[Series]:
        data = self._get(
            "/api/v1/query_range",
            query=expr,
            start=f"{start_s:.3f}",
            end=f"{end_s:.3f}",
            step=f"{step_s:g}",
        )
        return [Series(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]

    def targets_up(self) -> list[dict[str, Any]]:
        """The active scrape targets (``/api/v1/targets``)."""
        return list(self._get("/api/v1/targets", state="active")["activeTargets"])
