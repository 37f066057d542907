"""Reading a Triton-style model repository into the core's ``ModelSpec``s, and building a ``Service`` on it.

Each ``<repo>/<name>/config.pbtxt`` is parsed by ``gateway.config_pbtxt`` (Triton's own schema); its JSON
form is kept for the config endpoint. The variant card beside it is read when present (a variant without a
card is served, without measured facts). Hidden directories are ignored; numeric subdirectories are
versions, filtered by the config's ``version_policy``.

A model directory may be a symbolic link to a directory inside the repository (an alias, a swapped
``..data``-style layout); one that resolves outside it is refused in every control mode, and the repository
API (``RepositoryService``) answers names that are not one plain directory entry with ``InvalidInput``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonclient.grpc import model_config_pb2 as mc

from gateway.backends.base import DEFAULT_BACKEND, BackendLoader, load_backend
from gateway.config_pbtxt import ConfigError, config_from_proto, config_to_json, parse_config
from gateway.core.config import ModelSpec, RepositoryScan
from gateway.core.drift.monitor import DriftMonitor
from gateway.core.errors import InvalidInput
from gateway.core.models.health import HealthConfig
from gateway.core.models.runner import ControlMode, ModelLoader
from gateway.core.selection.policy import Policy
from gateway.core.service import DEFAULT_EXTENSIONS, Service
from gateway.core.telemetry.observer import Observer
from varigate.contract.card import CARD_FILENAME, CardError, VariantCard, card_from_dict
from varigate.contract.layout import CONFIG_FILENAME

if TYPE_CHECKING:
    from gateway.backends.placement import Scaleout

NAME_MAX_BYTES = 255  # the longest file name Linux (NAME_MAX) and common file systems allow


@dataclass(frozen=True, slots=True)
class QueueDefaults:
    """What the gateway gives every queue policy that config.pbtxt leaves at Triton's 0 (unbounded): a
    size (``max_queue_size``) and a time (``default_timeout_microseconds``, REJECT levels only). A
    config's own non-zero values are kept."""

    max_queue_size: int = 0
    timeout_us: int = 0


class ModelRepository:
    """The core's ``ModelSource`` over a directory."""

    def __init__(
        self, path: Path | str, queue_defaults: QueueDefaults | None = None, instances: int = 1
    ) -> None:
        self.path = Path(path)
        self.queue_defaults = queue_defaults or QueueDefaults()
        self.instances = instances  # where a config.pbtxt declares no instance_group (the backend's layout)
        if not self.path.is_dir():
            raise ConfigError(f"model repository {str(self.path)!r} is not a directory")

    def outside(self, name: str) -> str:
        """Why entry ``name`` may not be served because it leads out of the repository ("" when it does
        not): a symbolic link must resolve to a directory strictly inside the repository's real path."""
        entry = self.path / name
        if not entry.is_symlink():
            return ""
        root = self.path.resolve()  # now: the repository path may itself be a link that was swapped
        try:
            target = entry.resolve()
        except (OSError, RuntimeError):  # a loop of links
            target = root
        if target != root and target.is_relative_to(root):
            return ""
        return f"model {name!r} is a symbolic link that resolves outside the model repository"

    def check_name(self, name: str) -> None:
        """``InvalidInput`` unless ``name`` is a plain model name and, if that entry exists, stays inside."""
        check_model_name(name)
        problem = self.outside(name)
        if problem:
            raise InvalidInput(problem)

    def scan(self) -> RepositoryScan:
        models: dict[str, ModelSpec] = {}
        errors: dict[str, str] = {}
        try:  # the repository itself unreadable (gone, not a directory, no permission): OSError, nothing read
            entries = sorted(self.path.iterdir())
        except OSError as e:
            raise OSError(
                e.errno, f"model repository {str(self.path)!r} cannot be read: {e.strerror}"
            ) from None
        for model_dir in entries:
            if model_dir.name.startswith("."):
                continue
            if problem := self.outside(model_dir.name):
                errors[model_dir.name] = problem
                continue
            if not model_dir.is_dir():
                continue
            try:
                models[model_dir.name] = read_model(model_dir, self.queue_defaults, self.instances)
            except (ConfigError, OSError) as e:
                errors[model_dir.name] = str(e)
        return RepositoryScan(models, errors)


def check_model_name(name: str) -> None:
    """``InvalidInput`` unless ``name`` can only mean one visible entry directly inside the repository."""
    problem = ""
    if not name:
        problem = "is empty"
    elif "/" in name:
        problem = "contains '/'"
    elif "\0" in name:
        problem = "contains a NUL character"
    elif name.startswith("."):
        problem = "starts with '.' ('.', '..' and hidden entries are not models)"
    elif not name.isprintable():
        problem = "contains a control or unprintable character"
    elif len(name.encode()) > NAME_MAX_BYTES:
        problem = f"is longer than {NAME_MAX_BYTES} bytes"
    if problem:
        shown = repr(name) if len(name) <= 80 else f"{name[:80]!r}... ({len(name)} characters)"
        raise InvalidInput(f"model name {shown} {problem}; a model name is one directory in the repository")


def read_model(model_dir: Path, queue_defaults: QueueDefaults | None = None, instances: int = 1) -> ModelSpec:
    """``queue_defaults`` bound every queue policy that config.pbtxt leaves unbounded, and a config without
    ``instance_group`` gets ``instances`` CPU instances (the backend's layout); the config endpoint shows
    what is in force, as Triton's auto-completed config does."""
    config_path = model_dir / CONFIG_FILENAME
    try:
        text = config_path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{config_path}: no {CONFIG_FILENAME}") from None
    proto = parse_config(text, model_dir.name, str(config_path))
    _bound_queues(proto, queue_defaults or QueueDefaults())
    if not proto.instance_group:
        proto.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=max(1, instances))
    config = config_from_proto(proto, str(config_path))
    card, card_error, card_bytes = _card(model_dir)
    versions = {int(d.name): _fingerprint(d) for d in model_dir.iterdir() if d.is_dir() and d.name.isdigit()}
    served = config.version_policy.select(set(versions))
    return ModelSpec(
        name=model_dir.name,
        path=model_dir,
        config=config,
        config_json=config_to_json(proto),
        versions={v: versions[v] for v in served},
        fingerprint=hashlib.sha256(text + b"\0" + card_bytes).hexdigest(),
        card=card,
        card_error=card_error,
    )


def _bound_queues(proto: mc.ModelConfig, bounds: QueueDefaults) -> None:
    """Give the queue policies that ``proto`` leaves unbounded the gateway's bounds."""
    if not proto.HasField("dynamic_batching"):
        return
    db = proto.dynamic_batching
    for policy in (db.default_queue_policy, *db.priority_queue_policy.values()):
        policy.max_queue_size = policy.max_queue_size or bounds.max_queue_size
        reject = policy.timeout_action == mc.ModelQueuePolicy.REJECT
        if reject and bounds.timeout_us and not policy.default_timeout_microseconds:
            # on top of the model's own batching delay, which a request may always wait out
            policy.default_timeout_microseconds = bounds.timeout_us + db.max_queue_delay_microseconds


def _card(model_dir: Path) -> tuple[VariantCard | None, str, bytes]:
    """The card (None when absent or unreadable), why it could not be read, and its bytes."""
    path = model_dir / CARD_FILENAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, "", b""
    try:
        return card_from_dict(json.loads(data), str(path)), "", data
    except json.JSONDecodeError as e:
        return None, f"{path}: not JSON ({e})", data
    except CardError as e:
        return None, str(e), data


def _fingerprint(version_dir: Path) -> str:
    """Names, sizes and modification times of every file in a version directory."""
    h = hashlib.sha256()
    for p in sorted(version_dir.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(version_dir)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def create_service(
    repository: Path | str,
    *,
    control_mode: ControlMode | str = ControlMode.NONE,
    poll_interval_s: float = 15.0,
    startup_models: Sequence[str] = (),
    backend: str = DEFAULT_BACKEND,
    backend_options: Mapping[str, Any] | None = None,
    policy: Policy | None = None,
    observer: Observer | None = None,
    strict_readiness: bool = True,
    server_version: str = "0.1.0",
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    drift: DriftMonitor | None = None,
    queue_defaults: QueueDefaults | None = None,
    health: HealthConfig | None = None,
    scaleout: Scaleout | None = None,
) -> Service:
    """A ``Service`` over the repository at ``repository``; call ``await service.start()`` to load models.
    With ``scaleout``, variants run where it places them: in-process, on its Triton fleet, or both."""
    runs_on = load_backend(backend, **dict(backend_options or {}))
    loader: ModelLoader = BackendLoader(runs_on)
    if scaleout is not None:
        from gateway.backends.placement import PlacedLoader

        loader = PlacedLoader(BackendLoader(runs_on), scaleout)
    return RepositoryService(
        ModelRepository(repository, queue_defaults, runs_on.default_instances),
        loader,
        control_mode=ControlMode(control_mode),
        startup_models=startup_models,
        poll_interval_s=poll_interval_s,
        policy=policy,
        observer=observer,
        strict_readiness=strict_readiness,
        server_version=server_version,
        extensions=extensions,
        drift=drift,
        health=health,
    )


class RepositoryService(Service):
    """A ``Service`` whose repository API checks each name before it meets the file system: a malformed
    name, or an entry that links out of the repository, is ``InvalidInput``; a well-formed name that is
    not there stays ``ModelNotFound`` (the core looks names up among scanned entries, never joins them)."""

    def __init__(self, repository: ModelRepository, loader: ModelLoader, **options: Any) -> None:
        super().__init__(repository, loader, **options)
        self.repository = repository

    async def load_model(self, name: str, parameters: dict[str, Any] | None = None) -> None:
        self._require_explicit("load")
        self.repository.check_name(name)
        await super().load_model(name, parameters)

    async def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        self._require_explicit("unload")
        check_model_name(name)
        await super().unload_model(name, unload_dependents=unload_dependents)
