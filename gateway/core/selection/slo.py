"""A request's latency contract, read from its ``parameters`` and its model's config.

- ``slo_ms`` (request parameter, integer milliseconds; HTTP also takes the ``varigate-slo-ms`` header): the
  latency the client wants, measured inside the gateway from arrival to response.
- ``varigate.default_slo_ms`` (config.pbtxt parameter): the SLO of requests that name none.
- ``max_accuracy_loss`` (request parameter, a relative loss such as ``0.005``): variants whose card
  reports a larger loss against the fp32 reference never serve the request.
- the client's own deadline (a gRPC deadline): past it, nobody waits for the answer.

The response says ``varigate_slo_met`` (true/false) whenever an SLO applied. The SLO policy's own
settings (``SloConfig``) and the reasons it reports live here too, so configuration code needs no policy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gateway.core.config import ModelConfig
from gateway.core.errors import InvalidInput
from varigate.contract.keys import MAX_LOSS_PARAMETER, PARAM_DEFAULT_SLO, SLO_PARAMETER


@dataclass(frozen=True, slots=True)
class SloTerms:
    slo_ns: int | None = None  # None: the request has no SLO
    max_loss: float | None = None  # None: any variant's accuracy will do
    client_deadline_ns: int | None = None  # time.monotonic_ns() when the client stops waiting

    @property
    def slo_s(self) -> float | None:
        """The SLO in seconds, for events and metrics (the edge)."""
        return None if self.slo_ns is None else self.slo_ns / 1e9


NO_TERMS = SloTerms()


def parse_slo_ms(value: Any, where: str) -> float:
    """A positive number of milliseconds (integers by the contract; a fraction is taken as given; a
    string of digits is accepted, for headers)."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            pass
    ok = (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )
    if not ok:
        raise InvalidInput(f"{where} must be a positive integer number of milliseconds, got {value!r}")
    return float(value)


def config_default_slo_ms(config: ModelConfig) -> int | None:
    """The config's ``varigate.default_slo_ms``; ``ValueError`` when it is not a positive integer."""
    raw = config.parameters.get(PARAM_DEFAULT_SLO, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) <= 0:
        raise ValueError(f"{PARAM_DEFAULT_SLO} must be a positive integer (milliseconds), got {raw!r}")
    return int(raw)


def default_slo_ms(configs: Iterable[ModelConfig]) -> int | None:
    """The tightest default among the variants a request may go to (they normally agree)."""
    found = []
    for config in configs:
        try:
            value = config_default_slo_ms(config)
        except ValueError:
            continue  # refused when the repository was read; never fail a request over it
        if value is not None:
            found.append(value)
    return min(found, default=None)


def request_terms(
    parameters: Mapping[str, Any],
    model: str,
    default_ms: int | None = None,
    client_deadline_s: float | None = None,
) -> SloTerms:
    """The terms of a request to ``model``; ``InvalidInput`` names a bad parameter. ``client_deadline_s``
    is ``time.monotonic()`` when the client stops waiting (``InferRequest.deadline_s``)."""
    given = parameters.get(SLO_PARAMETER)
    slo_ms: float | None = float(default_ms) if default_ms is not None else None
    if given is not None:
        slo_ms = parse_slo_ms(given, f"request parameter {SLO_PARAMETER!r} for model {model!r}")
    max_loss = parameters.get(MAX_LOSS_PARAMETER)
    if max_loss is not None:
        if isinstance(max_loss, bool) or not isinstance(max_loss, (int, float)) or not 0 <= max_loss <= 1:
            raise InvalidInput(
                f"request parameter {MAX_LOSS_PARAMETER!r} for model {model!r} must be a relative loss "
                f"between 0 and 1, got {max_loss!r}"
            )
        max_loss = float(max_loss)
    slo_ns = None if slo_ms is None else round(slo_ms * 1e6)
    client_deadline_ns = None if client_deadline_s is None else round(client_deadline_s * 1e9)
    return SloTerms(slo_ns, max_loss, client_deadline_ns)


# -- the SLO policy's settings (``gateway.core.selection.slo_policy``) -------------------------------------


class Reason(StrEnum):
    NO_SLO = "no_slo"  # no SLO: the most accurate eligible variant
    SLO = "slo"  # the ceiling variant meets the SLO
    STEP_DOWN = "step_down"  # the ceiling could not; a faster variant within the budget can
    OVERFLOW = "overflow"  # nothing at or below the ceiling could; a more accurate one above it can
    AGGRESSIVE = "aggressive"  # none within the budget could; one beyond it that the budget admits can
    FASTEST = "fastest"  # none could: the earliest predicted answer, served late


class Infeasible(StrEnum):
    SERVE = "serve"
    REJECT = "reject"
    SHED = "shed"


@dataclass(frozen=True, slots=True)
class SloConfig:
    margin_fraction: float = 0.1  # of the SLO, kept free for what the gateway cannot predict
    margin_ms: float = 1.0
    infeasible: Infeasible = Infeasible.SERVE
    accuracy_budget: float = 0.01  # long-run mean relative accuracy loss allowed per logical model
    budget_window: int = 2000  # requests the running mean loss is weighted over
    step_up_after_s: float = 3.0
    min_dwell_s: float = 2.0
    headroom: float = 0.2
    rate_window_s: float = 1.0
    mix_window_s: float = 10.0

    def __post_init__(self) -> None:
        if not (0 <= self.margin_fraction < 1 and self.margin_ms >= 0 and self.accuracy_budget >= 0):
            raise ValueError(f"invalid SLO policy configuration {self}")
        if not (self.budget_window >= 1 and 0 <= self.headroom < 1 and self.rate_window_s > 0):
            raise ValueError(f"invalid SLO policy configuration {self}")
