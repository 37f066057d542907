"""The data plane: inference and what clients read about models (the MLServer split: repository control is
``gateway.core.control``). Both protocol adapters reach it through ``gateway.core.service.Service``.

One request's path: resolve the name (a variant pins it; a logical model lets the policy choose), read its
SLO terms and hard deadline, **validate it** against the model's config (so an invalid request never reaches
the policy or a batch), then either queue it for late binding (the default policy, ``selection.late``: the
variant is chosen when its batch forms, among those whose circuit is closed, ``models.health``) or, with a
per-request policy or a pinned variant, choose now and enqueue it on that version's batcher
(synchronously: a routed request is always accepted or refused, never lost to a reload), and answer with
the outputs, ``varigate_variant`` and ``varigate_slo_met``. Every finished request, answered or not, is one
``RequestEvent`` on the core's fan-out; with a drift monitor, a fraction of answered requests is shadowed
(``drift.shadow``).
Time points are ``time.monotonic_ns()``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from typing import Any

from gateway.core.api import ModelMetadata, ModelStatistics
from gateway.core.batching.queue import BatchResult
from gateway.core.drift.shadow import Shadower
from gateway.core.errors import BackendError, GatewayError, InvalidInput, Unavailable, Unsupported
from gateway.core.models import metadata
from gateway.core.models.health import Health
from gateway.core.models.registry import ModelRecord, Registry, VersionState
from gateway.core.selection.late import Bound, LateBinding
from gateway.core.selection.policy import Candidate, Policy, PolicyContext
from gateway.core.selection.slo import NO_TERMS, SloTerms, default_slo_ms, request_terms
from gateway.core.telemetry.observer import Observer, Outcome, RequestEvent
from gateway.core.telemetry.stats import Statistics
from gateway.core.types import Datatype, InferRequest, InferResponse, Tensor
from gateway.core.validation import ValidRequest, validate
from varigate.contract.keys import DEADLINE_PARAMETER, SLO_MET_PARAMETER, VARIANT_PARAMETER

Target = tuple[ModelRecord, VersionState]
# numpy dtype -> datatype for outputs, looked up once per dtype (Datatype.from_numpy compares them in turn)
_DATATYPE_OF = {d.numpy: d for d in Datatype if d is not Datatype.BYTES}


class DataPlane:
    def __init__(
        self,
        registry: Registry,
        policy: Policy,
        events: Observer,
        stats: Statistics,
        health: Health,
        shadow: Shadower | None = None,
    ) -> None:
        self.policy = policy
        self._registry, self._events, self._stats = registry, events, stats
        self._health, self._shadow = health, shadow
        self._seq = itertools.count(1)
        self.accepting = True

    async def infer(self, request: InferRequest) -> InferResponse:
        started = time.monotonic_ns()
        if not self.accepting:
            raise Unavailable(f"server is shutting down; request for model {request.model_name!r} refused")
        route = self._registry.resolve(request.model_name, request.model_version)
        target, terms, seq = route.targets[0], NO_TERMS, next(self._seq)
        result: BatchResult | None = None
        try:
            default_ms = default_slo_ms(r.spec.config for r, _ in route.targets if r.spec is not None)
            terms = request_terms(request.parameters, request.model_name, default_ms, request.deadline_s)
            expires_ns = _expires_ns(request, started)
            valid = _validate(request, target)
            if not route.pinned and isinstance(self.policy, LateBinding):
                name, version = request.model_name, request.model_version
                item = self.policy.submit(
                    route.logical_model,
                    lambda: self._bound(name, version),
                    valid.feeds,
                    terms,
                    priority=valid.priority,
                    timeout_us=valid.timeout_us,
                    now_ns=started,
                    expires_ns=expires_ns,
                )
                try:
                    result = await item.future
                finally:
                    target = item.served or target
            else:
                if not route.pinned:
                    chosen = self._choose(route.logical_model, route.targets, request, started, terms, seq)
                    if chosen[0].spec is not target[0].spec:  # variants share their inputs; limits may differ
                        valid = _validate(request, chosen)
                    target = chosen
                result = await self._submit(target, valid, terms, started, expires_ns)
            outputs = [_tensor(name, result) for name in valid.outputs]
        except GatewayError as e:
            self._finish(route.logical_model, target, request, started, None, e, terms, seq)
            raise
        except asyncio.CancelledError:
            cancelled = Unavailable("cancelled")
            self._finish(route.logical_model, target, request, started, None, cancelled, terms, seq)
            raise
        event = self._finish(route.logical_model, target, request, started, result, None, terms, seq)
        parameters: dict[str, Any] = {VARIANT_PARAMETER: target[0].name}
        if event.slo_met is not None:
            parameters[SLO_MET_PARAMETER] = event.slo_met
        if self._shadow is not None:
            self._shadow.after(route.logical_model, target, valid.feeds, result, request.id)
        return InferResponse(
            model_name=target[0].name,
            model_version=str(target[1].version),
            outputs=outputs,
            id=request.id,
            parameters=parameters,
        )

    async def _submit(
        self, target: Target, valid: ValidRequest, terms: SloTerms, started_ns: int, expires_ns: int
    ) -> BatchResult:
        batcher = target[1].batcher
        assert batcher is not None  # READY versions have one
        return await batcher.submit(
            valid.feeds,
            priority=valid.priority,
            timeout_us=valid.timeout_us,
            deadline_ns=started_ns + terms.slo_ns if terms.slo_ns is not None else 0,
            expires_ns=expires_ns,
        )

    def _bound(self, name: str, version: str) -> list[Bound]:
        """The variants a late-bound batch of ``name`` may go to now: READY, their circuits closed (all of
        them when every circuit is open)."""
        targets = self._registry.resolve(name, version).targets
        healthy = [(r, v) for r, v in targets if self._routable(r, v)] or list(targets)
        return [(_candidate(r, v), v.batcher, (r, v)) for r, v in healthy if v.batcher is not None]

    def _choose(
        self,
        logical: str,
        targets: Sequence[Target],
        request: InferRequest,
        now_ns: int,
        terms: SloTerms,
        seq: int,
    ) -> Target:
        healthy = [(r, v) for r, v in targets if self._routable(r, v)]
        avoided = frozenset(r.name for r, _ in targets) - {r.name for r, _ in healthy}
        # every variant avoided: let the policy try them all
        by_name = {r.name: (r, v) for r, v in (healthy or targets)}
        candidates = [_candidate(r, v) for r, v in by_name.values()]
        context = PolicyContext(request, _rows(request), now_ns, terms, seq, avoided)
        chosen = self.policy.choose(logical, candidates, context)
        try:
            return by_name[chosen.model_name]
        except KeyError:
            raise GatewayError(
                f"policy {type(self.policy).__name__} chose {chosen.model_name!r}, not a candidate"
            ) from None

    def _routable(self, record: ModelRecord, version: VersionState) -> bool:
        stuck = version.batcher is not None and version.batcher.overrunning > 0
        return not stuck and self._health.routable(record.name)

    def _finish(
        self,
        logical: str,
        target: Target,
        request: InferRequest,
        started_ns: int,
        result: BatchResult | None,
        error: GatewayError | None,
        terms: SloTerms,
        seq: int,
    ) -> RequestEvent:
        request_s = (time.monotonic_ns() - started_ns) / 1e9
        slo_met = None if terms.slo_s is None else (error is None and request_s <= terms.slo_s)
        compute_ns = (
            result.compute_input_ns + result.compute_infer_ns + result.compute_output_ns if result else 0
        )
        event = RequestEvent(
            logical_model=logical,
            model=target[0].name,
            version=str(target[1].version),
            protocol=request.protocol,
            outcome=Outcome.SUCCESS if error is None else Outcome.FAILURE,
            reason="" if error is None else error.reason,
            rows=_rows(request),
            request_s=request_s,
            queue_s=result.queue_ns / 1e9 if result else 0.0,
            compute_s=compute_ns / 1e9,
            slo_s=terms.slo_s or 0.0,
            slo_met=slo_met,
            seq=seq,
            result=result,
        )
        self._events.request_done(event)
        return event

    # -- what clients read about models -----------------------------------------------------------------

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self._registry.resolve(name, version)
        except GatewayError:
            return False
        return True

    def check_model(self, name: str, version: str = "") -> None:
        """Raise ``ModelNotFound`` / ``ModelNotReady`` unless ``name`` (at ``version``) can take requests:
        a dictionary lookup, done before a request's tensors are decoded."""
        self._registry.resolve(name, version)

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        return metadata.model_metadata(self._registry, name, version)

    def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        return metadata.model_config(self._registry, name, version)

    def statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]:
        return [self._stats.snapshot(m, v) for m, v in metadata.stat_keys(self._registry, name, version)]

    def record_labels(self, model: str, labels: list[tuple[str, object]]) -> tuple[int, list[str]]:
        """Ground truth for earlier requests with an ``id`` that a classifier variant of ``model`` served."""
        if self._shadow is None:
            raise Unsupported(f"ground-truth labels for model {model!r} need the drift monitor, which is off")
        return self._shadow.monitor.label(self._registry.resolve(model).logical_model, labels)


def _validate(request: InferRequest, target: Target) -> ValidRequest:
    assert target[0].spec is not None  # READY versions have a spec
    return validate(request, target[0].spec.config)


def _candidate(record: ModelRecord, version: VersionState) -> Candidate:
    assert record.spec is not None and version.batcher is not None  # READY versions have both
    batcher = version.batcher
    spec = record.spec
    return Candidate(
        record.name,
        record.variant,
        str(version.version),
        spec.config,
        spec.card,
        batcher.queued,
        batcher.inflight,
        batcher,
    )


def _expires_ns(request: InferRequest, started_ns: int) -> int:
    """The request's hard deadline (``time.monotonic_ns()``, 0 = none): its client's deadline or its
    ``deadline_ms`` parameter, whichever comes first."""
    found = [round(request.deadline_s * 1e9)] if request.deadline_s is not None else []
    given = request.parameters.get(DEADLINE_PARAMETER)
    if given is not None:
        ok = isinstance(given, (int, float)) and not isinstance(given, bool) and 0 < given < 1e12
        if not ok:
            raise InvalidInput(
                f"request parameter {DEADLINE_PARAMETER!r} for model {request.model_name!r} must be a "
                f"positive number of milliseconds, got {given!r}"
            )
        found.append(started_ns + round(given * 1e6))
    return min(found, default=0)


def _rows(request: InferRequest) -> int:
    return request.inputs[0].shape[0] if request.inputs and request.inputs[0].shape else 1


def _tensor(name: str, result: BatchResult) -> Tensor:
    try:
        data = result.outputs[name]
    except KeyError:
        raise BackendError(
            f"backend returned no output {name!r}; it returned {sorted(result.outputs)}"
        ) from None
    datatype = _DATATYPE_OF.get(data.dtype) or Datatype.from_numpy(data.dtype)
    return Tensor(name, datatype, tuple(data.shape), data)
