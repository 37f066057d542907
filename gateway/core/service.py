"""The data plane: ``Service`` implements ``gateway.core.api.InferenceService`` for both protocol adapters.

``infer`` resolves the name (a variant pins it; a logical model asks the policy), validates the request
against the chosen variant's config, enqueues it on that version's batcher (synchronously: a request that
was routed is always accepted or refused, never lost to a reload), and answers with the outputs and
``parameters["varigate_variant"]``. Models come from a ``ModelSource`` and run on a ``ModelLoader``'s
runners, per the Triton control mode. A request's SLO terms (``gateway.core.selection.slo``) go to the policy,
its deadline to the batcher, and the answer says ``varigate_slo_met``; with a ``DriftMonitor``, a fraction of
answered requests is shadowed on spare capacity (``gateway.core.drift.shadow``). A hard deadline (the client's
gRPC deadline, or the ``deadline_ms`` parameter) is answered with ``DeadlineExceeded`` when it passes. The
policy sees only the variants whose circuit is closed (``gateway.core.models.health``). A poll that cannot
read the repository at all changes nothing: models keep serving, their index reason says why, once logged.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from typing import Any

from gateway.core.api import ModelMetadata, ModelStatistics, RepositoryEntry, ServerMetadata
from gateway.core.batching.queue import BatchResult
from gateway.core.drift.monitor import DriftMonitor
from gateway.core.drift.shadow import Shadower
from gateway.core.errors import (
    BackendError,
    GatewayError,
    InvalidInput,
    ModelLoadError,
    ModelNotFound,
    Unavailable,
    Unsupported,
)
from gateway.core.models import metadata
from gateway.core.models.health import Health, HealthConfig, HealthFeed, HealthObserver
from gateway.core.models.lifecycle import ModelManager
from gateway.core.models.registry import UNLOADED, ModelRecord, Registry, VersionState
from gateway.core.models.runner import ControlMode, ModelLoader, ModelSource
from gateway.core.selection.policy import (
    BatchAware,
    Candidate,
    MostAccuratePolicy,
    Policy,
    PolicyContext,
    PolicyFeed,
)
from gateway.core.selection.slo import NO_TERMS, SloTerms, default_slo_ms, request_terms
from gateway.core.telemetry.observer import NullObserver, Observer, Outcome, RequestEvent
from gateway.core.telemetry.stats import Statistics, StatsObserver
from gateway.core.types import Datatype, InferRequest, InferResponse, Tensor
from gateway.core.validation import validate
from varigate.contract.keys import DEADLINE_PARAMETER, SLO_MET_PARAMETER, VARIANT_PARAMETER

logger = logging.getLogger(__name__)

LOAD_ALL = "*"
DEFAULT_EXTENSIONS = (
    "binary_tensor_data",
    "parameters",
    "model_configuration",
    "model_repository",
    "model_repository(unload_dependents)",
    "schedule_policy",
    "statistics",
)


class Service:
    def __init__(
        self,
        source: ModelSource,
        loader: ModelLoader,
        *,
        control_mode: ControlMode = ControlMode.NONE,
        startup_models: Sequence[str] = (),
        poll_interval_s: float = 15.0,
        policy: Policy | None = None,
        observer: Observer | None = None,
        server_name: str = "varigate",
        server_version: str = "0.1.0",
        extensions: Sequence[str] = DEFAULT_EXTENSIONS,
        strict_readiness: bool = True,
        drift: DriftMonitor | None = None,
        health: HealthConfig | None = None,
    ) -> None:
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s}")
        self._source, self._loader = source, loader
        self.control_mode = ControlMode(control_mode)
        self._startup_models = tuple(startup_models)
        self._poll_interval_s = poll_interval_s
        self.policy: Policy = policy or MostAccuratePolicy()
        self._observer = observer or NullObserver()
        self._metadata = ServerMetadata(server_name, server_version, tuple(extensions))
        self._strict = strict_readiness
        self._registry = Registry()
        self._stats = Statistics()
        feed: Observer = StatsObserver(self._stats, self._observer)
        if isinstance(self.policy, BatchAware):  # it learns from every executed batch too
            feed = PolicyFeed(feed, self.policy)
        self.health = Health(health, self._observer if isinstance(self._observer, HealthObserver) else None)
        feed = HealthFeed(feed, self.health)
        self._manager = ModelManager(self._registry, loader, feed)
        self._shadow = Shadower(drift, self._registry) if drift is not None else None
        self._seq = itertools.count(1)
        self._started = False
        self._accepting = True
        self._closed = False
        self._drain_deadline: float | None = None
        self._poller: asyncio.Task[None] | None = None
        self._repository_error = ""

    # -- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the repository and load models per the control mode; in poll mode, start polling."""
        scan = await asyncio.to_thread(self._source.scan)
        for name, error in scan.errors.items():
            self._manager.refuse(name, error)
        if self.control_mode is ControlMode.EXPLICIT:
            self._manager.register(scan.models.values())
            wanted = set(scan.models) if LOAD_ALL in self._startup_models else set(self._startup_models)
            for name in sorted(wanted):
                await self._manager.load(name, scan.models)
        else:
            for spec in scan.models.values():
                try:
                    await self._manager.apply(spec)
                except ModelLoadError as e:
                    logger.error("%s", e)
        if self.control_mode is ControlMode.POLL:
            self._poller = asyncio.get_running_loop().create_task(
                self._poll_forever(), name="repository-poll"
            )
        self._started = True

    async def poll_once(self) -> None:
        """Re-scan the repository and apply what changed (what the poll task does every interval). A
        repository that cannot be read at all (gone, not a directory, no permission) changes nothing."""
        try:
            scan = await asyncio.to_thread(self._source.scan)
        except OSError as e:
            if str(e) != self._repository_error:
                logger.error("%s; models keep serving what is loaded", e)
            self._repository_error = str(e)
            self._manager.mark_serving(f"{e}; the repository was not re-read")
            return
        if self._repository_error:
            logger.warning("model repository readable again; applying its changes")
            self._repository_error = ""
        await self._manager.sync(scan)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Stop accepting requests (they get ``Unavailable``) and wait until every accepted one finished;
        raise ``TimeoutError`` after ``timeout_s`` (the requests go on; ``close`` ends them)."""
        self._accepting = False
        self._stop_polling()
        if timeout_s is not None:
            deadline = time.monotonic() + timeout_s
            self._drain_deadline = min(self._drain_deadline or deadline, deadline)
        batchers = [v.batcher for r in self._registry.records() for v in r.versions if v.batcher is not None]
        await asyncio.wait_for(asyncio.gather(*(b.drain() for b in batchers)), timeout_s)

    async def close(self, timeout_s: float | None = None) -> None:
        """Drain, then unload every model and release the loader. The drain lasts at most ``timeout_s``, or
        what is left of an earlier ``drain(timeout_s)``; requests unfinished then fail with
        ``Unavailable``."""
        if timeout_s is None and self._drain_deadline is not None:
            timeout_s = max(0.0, self._drain_deadline - time.monotonic())
        try:
            await self.drain(timeout_s)
        except TimeoutError:
            logger.warning("requests still unfinished after draining for %s s are failed", timeout_s)
        finally:
            if self._shadow is not None:
                await self._shadow.close()
            await self._manager.close(timeout_s=0 if timeout_s is not None else None)
            self._loader.close()
            self._closed = True

    # -- inference --------------------------------------------------------------------------------------

    async def infer(self, request: InferRequest) -> InferResponse:
        started = time.monotonic_ns()
        if not self._accepting:
            raise Unavailable(f"server is shutting down; request for model {request.model_name!r} refused")
        route = self._registry.resolve(request.model_name, request.model_version)
        record, version = route.targets[0]
        terms, seq = NO_TERMS, next(self._seq)
        try:
            default_ms = default_slo_ms(r.spec.config for r, _ in route.targets if r.spec is not None)
            terms = request_terms(request.parameters, request.model_name, default_ms, request.deadline_s)
            if not route.pinned:
                record, version = self._choose(
                    route.logical_model, route.targets, request, started, terms, seq
                )
            assert record.spec is not None and version.batcher is not None
            valid = validate(request, record.spec.config)
            deadline_ns = started + round(terms.slo_s * 1e9) if terms.slo_s is not None else 0
            future = version.batcher.submit(
                valid.feeds,
                priority=valid.priority,
                timeout_us=valid.timeout_us,
                deadline_ns=deadline_ns,
                expires_ns=_expires_ns(request, started),
            )
            result = await future
            outputs = [_tensor(name, result) for name in valid.outputs]
        except GatewayError as e:
            self._finish(route.logical_model, (record, version), request, started, None, e, terms, seq)
            raise
        except asyncio.CancelledError:
            cancelled = Unavailable("cancelled")
            self._finish(
                route.logical_model, (record, version), request, started, None, cancelled, terms, seq
            )
            raise
        event = self._finish(
            route.logical_model, (record, version), request, started, result, None, terms, seq
        )
        parameters: dict[str, Any] = {VARIANT_PARAMETER: record.name}
        if event.slo_met is not None:
            parameters[SLO_MET_PARAMETER] = event.slo_met
        if self._shadow is not None:
            self._shadow.after(route.logical_model, (record, version), valid.feeds, result, request.id)
        return InferResponse(
            model_name=record.name,
            model_version=str(version.version),
            outputs=outputs,
            id=request.id,
            parameters=parameters,
        )

    def _choose(
        self,
        logical: str,
        targets: Sequence[tuple[ModelRecord, VersionState]],
        request: InferRequest,
        now_ns: int,
        terms: SloTerms,
        seq: int,
    ) -> tuple[ModelRecord, VersionState]:
        healthy = [(r, v) for r, v in targets if self._routable(r, v)]
        avoided = frozenset(r.name for r, _ in targets) - {r.name for r, _ in healthy}
        targets = healthy or targets  # every variant avoided: let the policy try them all
        candidates = [_candidate(r, v) for r, v in targets]
        context = PolicyContext(request, _rows(request), now_ns / 1e9, terms, seq, avoided)
        chosen = self.policy.choose(logical, candidates, context)
        for target, candidate in zip(targets, candidates, strict=True):
            if candidate == chosen:
                return target
        raise GatewayError(
            f"policy {type(self.policy).__name__} chose {chosen.model_name!r}, not a candidate"
        )

    def _routable(self, record: ModelRecord, version: VersionState) -> bool:
        stuck = version.batcher is not None and version.batcher.overrunning > 0
        return not stuck and self.health.routable(record.name)

    def _finish(
        self,
        logical: str,
        target: tuple[ModelRecord, VersionState],
        request: InferRequest,
        started_ns: int,
        result: BatchResult | None,
        error: GatewayError | None,
        terms: SloTerms = NO_TERMS,
        seq: int = 0,
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
        )
        self._stats.request_done(event, result)
        self._observer.request_done(event)
        self.policy.observe(event)
        return event

    # -- health and metadata ----------------------------------------------------------------------------

    def server_live(self) -> bool:
        return not self._closed

    def server_ready(self) -> bool:
        if not (self._started and self._accepting and not self._closed):
            return False
        return not self._strict or all(r.ready or r.reason == UNLOADED for r in self._registry.records())

    def server_metadata(self) -> ServerMetadata:
        return self._metadata

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

    def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        return self._registry.index(ready_only)

    # -- repository control -----------------------------------------------------------------------------

    async def load_model(self, name: str, parameters: dict[str, Any] | None = None) -> None:
        self._require_explicit("load")
        if parameters:
            raise Unsupported(f"load parameters {sorted(parameters)} for model {name!r} are not supported")
        scan = await asyncio.to_thread(self._source.scan)
        for missing, error in scan.errors.items():
            if missing == name:
                self._manager.refuse(name, error)
                raise ModelLoadError(f"failed to load model {name!r}: {error}")
        self._manager.register(scan.models.values())
        await self._manager.load(name, scan.models)

    async def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        self._require_explicit("unload")
        record = self._registry.get(name)
        targets = [record] if record is not None else self._registry.variants(name)
        if not targets:
            raise ModelNotFound(f"unknown model {name!r}: not in the repository")
        for r in targets:
            await self._manager.unload(r.name)

    def record_labels(self, model: str, labels: list[tuple[str, object]]) -> tuple[int, list[str]]:
        """Ground truth for earlier requests with an ``id`` that a classifier variant of ``model`` served."""
        if self._shadow is None:
            raise Unsupported(f"ground-truth labels for model {model!r} need the drift monitor, which is off")
        return self._shadow.monitor.label(self._registry.resolve(model).logical_model, labels)

    def _require_explicit(self, action: str) -> None:
        if self.control_mode is not ControlMode.EXPLICIT:
            raise Unsupported(
                f"explicit model {action} is not allowed in model control mode {self.control_mode.value!r}"
            )

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            try:
                await self.poll_once()
            except Exception:  # a failed poll must not stop polling
                logger.exception("repository poll failed")

    def _stop_polling(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None


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
    return Tensor(name, Datatype.from_numpy(data.dtype), tuple(data.shape), data)
