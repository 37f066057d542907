"""The model registry: which Triton models (variants) exist, which logical model each belongs to, and the
state of each version. Records are frozen and replaced whole, so a reader never sees half a change.

A name resolves to a variant first (``minilm.int8``: pinned) and to a logical model second (``minilm``:
every READY variant is a candidate for the policy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from gateway.core.api import RepositoryEntry
from gateway.core.batching.batcher import Batcher
from gateway.core.config import ModelSpec
from gateway.core.errors import ModelNotFound, ModelNotReady

UNLOADED = "unloaded"  # the reason of a model that is known but not loaded, on purpose


class ModelState(StrEnum):
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"


@dataclass(frozen=True, slots=True)
class VersionState:
    version: int
    state: ModelState
    reason: str = ""
    batcher: Batcher | None = None  # set while READY or UNLOADING (draining)


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """One Triton model, i.e. one variant, with its versions."""

    name: str
    spec: ModelSpec | None  # None when its config could not be read and nothing older is known
    versions: tuple[VersionState, ...] = ()  # ascending
    reason: str = ""  # model-level: why it is unavailable, or why a newer copy was refused
    # the READY versions, found once (records are replaced whole, never changed): read by every request
    ready: tuple[VersionState, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ready = tuple(v for v in self.versions if v.state is ModelState.READY and v.batcher is not None)
        object.__setattr__(self, "ready", ready)

    @property
    def logical_model(self) -> str:
        return self.spec.config.logical_model if self.spec else self.name

    @property
    def variant(self) -> str:
        return self.spec.config.variant if self.spec else self.name

    def version(self, version: str) -> VersionState:
        """The READY version named (``""`` = the latest READY one)."""
        if version == "":
            ready = self.ready
            if not ready:
                raise ModelNotReady(f"model {self.name!r} is not ready{_why(self.reason)}")
            return ready[-1]
        number = parse_version(self.name, version)
        for v in self.versions:
            if v.version == number:
                if v.state is ModelState.READY and v.batcher is not None:
                    return v
                raise ModelNotReady(
                    f"model {self.name!r} version {version} is {v.state.value}{_why(v.reason)}"
                )
        raise ModelNotFound(f"model {self.name!r} has no version {version!r}")


@dataclass(frozen=True, slots=True)
class Route:
    logical_model: str
    pinned: bool  # the client named a variant
    targets: tuple[tuple[ModelRecord, VersionState], ...]  # one when pinned; the candidates otherwise


def parse_version(name: str, version: str) -> int:
    if len(version) > 19:  # no int64 version has more digits; and a message must not echo megabytes
        raise ModelNotFound(f"model {name!r} has no version {version[:40]!r}...: versions are integers")
    try:
        number = int(version)
    except ValueError:
        raise ModelNotFound(f"model {name!r} has no version {version!r}: versions are integers") from None
    if number < 1:
        raise ModelNotFound(f"model {name!r} has no version {version!r}: versions start at 1")
    return number


def _why(reason: str) -> str:
    return f": {reason}" if reason else ""


class Registry:
    def __init__(self) -> None:
        self._records: dict[str, ModelRecord] = {}
        # logical model -> its variants' records, sorted by name; rebuilt after any put or remove, so a
        # request for a logical model neither sorts nor scans the records
        self._variants: dict[str, tuple[ModelRecord, ...]] | None = None

    def get(self, name: str) -> ModelRecord | None:
        return self._records.get(name)

    def require(self, name: str) -> ModelRecord:
        record = self._records.get(name)
        if record is None:
            raise ModelNotFound(f"unknown model {name!r}: not in the repository")
        return record

    def put(self, record: ModelRecord) -> None:
        self._records[record.name] = record
        self._variants = None

    def remove(self, name: str) -> None:
        self._records.pop(name, None)
        self._variants = None

    def records(self) -> list[ModelRecord]:
        return [self._records[n] for n in sorted(self._records)]

    def variants(self, logical_model: str) -> list[ModelRecord]:
        """The records of a logical model's variants, sorted by name (empty when there is no such model)."""
        if self._variants is None:
            by_logical: dict[str, list[ModelRecord]] = {}
            for r in self.records():
                if r.spec is not None:
                    by_logical.setdefault(r.logical_model, []).append(r)
            self._variants = {name: tuple(records) for name, records in by_logical.items()}
        return list(self._variants.get(logical_model, ()))

    def resolve(self, name: str, version: str = "") -> Route:
        """Where a request for ``name`` (variant or logical model) at ``version`` may go."""
        record = self._records.get(name)
        if record is not None:
            return Route(record.logical_model, True, ((record, record.version(version)),))
        variants = self.variants(name)
        if not variants:
            shown = name if len(name) <= 200 else name[:200] + "..."
            raise ModelNotFound(f"unknown model {shown!r}: not in the repository")
        targets: list[tuple[ModelRecord, VersionState]] = []
        errors: list[Exception] = []
        for r in variants:
            try:
                targets.append((r, r.version(version)))
            except (ModelNotFound, ModelNotReady) as e:
                errors.append(e)
        if targets:
            return Route(name, False, tuple(targets))
        if version and all(isinstance(e, ModelNotFound) for e in errors):
            raise ModelNotFound(f"model {name!r} has no version {version[:40]!r}")
        raise ModelNotReady(f"no variant of model {name!r} is ready ({'; '.join(str(e) for e in errors)})")

    def index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        entries: list[RepositoryEntry] = []
        for r in self.records():
            if not r.versions and not ready_only:
                entries.append(RepositoryEntry(r.name, "", ModelState.UNAVAILABLE.value, r.reason))
            for v in r.versions:
                if ready_only and v.state is not ModelState.READY:
                    continue
                reason = v.reason or (r.reason if v.state is ModelState.READY else "")
                entries.append(RepositoryEntry(r.name, str(v.version), v.state.value, reason))
        return entries
