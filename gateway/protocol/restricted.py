"""Restricted APIs as Triton does them (``--http-restricted-api`` / ``--grpc-restricted-protocol``):
``<api>,<api>,...:<key>=<value>`` names API groups that only answer requests carrying header ``key`` with
``value``. Over gRPC the header is ``triton-grpc-protocol-<key>``, as in Triton.

Besides Triton's groups there is ``labels``: ``POST /v2/models/{m}/labels`` (ground truth, which moves live
accuracy and can demote a variant), so it can be restricted apart from ``inference``. gRPC has no labels
RPC, so over gRPC the group is accepted and guards nothing."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.core.errors import PermissionDenied

API_GROUPS = frozenset(
    {
        "health",
        "metadata",
        "inference",
        "shared-memory",
        "model-config",
        "model-repository",
        "statistics",
        "trace",
        "logging",
        "labels",  # ours: ground-truth labels (HTTP only)
    }
)
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"


def parse_restriction(spec: str) -> tuple[frozenset[str], str, str]:
    """``"model-repository,statistics:admin-key=secret"`` -> (apis, key, value); ValueError names the flaw."""
    apis_part, sep, kv = spec.partition(":")
    key, eq, value = kv.partition("=")
    if not sep or not eq or not key.strip():
        raise ValueError(f"restricted API spec {spec!r} is not '<api>[,<api>...]:<key>=<value>'")
    apis = frozenset(a.strip() for a in apis_part.split(",") if a.strip())
    unknown = sorted(apis - API_GROUPS)
    if not apis or unknown:
        raise ValueError(
            f"restricted API spec {spec!r} names unknown APIs {unknown}; known: {sorted(API_GROUPS)}"
        )
    return apis, key.strip(), value


@dataclass(frozen=True, slots=True)
class Restrictions:
    """Which header each restricted API group requires: api -> (header key, value)."""

    by_api: dict[str, tuple[str, str]] = field(default_factory=dict)
    header_prefix: str = ""
    noun: str = "API"  # Triton says "API" over HTTP and "protocol" over gRPC

    @classmethod
    def parse(cls, specs: Iterable[str], *, header_prefix: str = "", noun: str = "API") -> Restrictions:
        by_api: dict[str, tuple[str, str]] = {}
        for spec in specs:
            apis, key, value = parse_restriction(spec)
            for api in apis:
                if api in by_api:
                    raise ValueError(f"API {api!r} appears in more than one restricted API group")
                by_api[api] = ((header_prefix + key).lower(), value)
        return cls(by_api, header_prefix, noun)

    def check(self, api: str, header: Callable[[str], str | None]) -> None:
        """Raise PermissionDenied unless ``header(key)`` carries the value ``api`` requires."""
        rule = self.by_api.get(api)
        if rule is None:
            return
        key, value = rule
        got = header(key)
        # compare_digest runs as long as its second argument (the configured value) whatever the first
        # one's length or content, so neither a wrong value nor a wrong length returns early. A missing
        # header is refused without comparing: its timing tells only what the client knows, that it sent none.
        if got is None or not hmac.compare_digest(got.encode(), value.encode()):
            raise PermissionDenied(f"This {self.noun} is restricted, expecting header '{key}'")
