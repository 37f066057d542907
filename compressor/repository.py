"""Writes one variant as a Triton model directory, atomically.

Layout (Triton's): ``<repo>/<name>/config.pbtxt``, ``<repo>/<name>/1/model.onnx`` and the variant card
``<repo>/<name>/varigate_card.json``. config.pbtxt is produced through Triton's own protobuf schema
(``tritonclient.grpc.model_config_pb2``) so a real Triton server accepts it.

A variant is built in a staging directory beside the repository (same filesystem, outside the directory a
server scans) and swapped in with one ``renameat2(RENAME_EXCHANGE)`` where the kernel has it, else with
two renames; a running server sees the old variant or the new one, never half of one. A writer killed
mid-write (SIGKILL, power loss) or stopped by a full disk leaves the repository as it was; what it left in
staging (directories named after its pid) is removed by the next write once that pid is gone. Other files
(the build report) are written the same way: staged, fsynced, renamed over the old one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from varigate.contract.card import CARD_FILENAME, VariantCard, read_card
from varigate.contract.keys import PARAM_LOGICAL_MODEL, PARAM_VARIANT
from varigate.contract.layout import CONFIG_FILENAME, MODEL_FILENAME, VERSION_DIR

_DTYPES: dict[str, int] = {
    "int64": mc.TYPE_INT64,
    "int32": mc.TYPE_INT32,
    "float32": mc.TYPE_FP32,
    "float16": mc.TYPE_FP16,
    "uint8": mc.TYPE_UINT8,
    "bytes": mc.TYPE_STRING,
}


class RepositoryError(RuntimeError):
    """The repository cannot be written; the message names the path."""


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    dtype: str  # numpy name: "int64", "float32", ...
    dims: tuple[int, ...]  # without the batch dimension; -1 = variable


@dataclass(frozen=True, slots=True)
class ServingSpec:
    """What config.pbtxt says about a variant."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 2000
    instance_count: int = (
        0  # 0: no instance_group; the gateway's layout decides (varigate/contract/execution.py)
    )
    extra_parameters: dict[str, str] = field(default_factory=dict)


def model_config(name: str, logical_model: str, variant: str, spec: ServingSpec) -> mc.ModelConfig:
    cfg = mc.ModelConfig(name=name, platform="onnxruntime_onnx", max_batch_size=spec.max_batch_size)
    for t in spec.inputs:
        cfg.input.add(name=t.name, data_type=_dtype(t.dtype), dims=list(t.dims))
    for t in spec.outputs:
        cfg.output.add(name=t.name, data_type=_dtype(t.dtype), dims=list(t.dims))
    cfg.dynamic_batching.preferred_batch_size.extend(spec.preferred_batch_sizes)
    cfg.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_us
    if spec.instance_count:
        cfg.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=spec.instance_count)
    params = {PARAM_LOGICAL_MODEL: logical_model, PARAM_VARIANT: variant, **spec.extra_parameters}
    for key, value in params.items():
        cfg.parameters[key].string_value = value
    return cfg


def _dtype(name: str) -> int:
    try:
        return _DTYPES[name]
    except KeyError:
        raise RepositoryError(f"unsupported tensor dtype {name!r}; known: {sorted(_DTYPES)}") from None


def config_text(cfg: mc.ModelConfig) -> str:
    return text_format.MessageToString(cfg)


def parse_config_text(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_up_to_date(repo: Path, name: str, build_key: str) -> bool:
    """True when ``repo/name`` holds a complete variant built from the same source and settings."""
    model_dir = repo / name
    try:
        card = read_card(model_dir)
    except Exception:  # noqa: BLE001 - any unreadable card means "rebuild"
        return False
    return (
        card.build_key == build_key
        and (model_dir / CONFIG_FILENAME).is_file()
        and (model_dir / VERSION_DIR / MODEL_FILENAME).is_file()
    )


def check_writable(repo: Path) -> None:
    """Fail early, before any compute, when the repository cannot be written. Creates nothing."""
    probe_dir = repo
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise RepositoryError(
            f"output repository {str(repo)!r} is not a directory: {str(probe_dir)!r} is a file"
        )
    try:
        tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".varigate-write-probe-").close()
    except OSError as e:
        raise RepositoryError(f"output repository {str(repo)!r} is not writable: {e.strerror or e}") from None


def staging_root(repo: Path) -> Path:
    """Where writes to ``repo`` are staged: beside it, on the same filesystem, hidden."""
    return repo.resolve().parent / f".{repo.resolve().name}.staging"


def write_variant(repo: Path, name: str, onnx_file: Path, cfg: mc.ModelConfig, card: VariantCard) -> Path:
    """Build the model directory in staging, then swap it into ``repo/name`` atomically."""
    check_writable(repo)
    repo.mkdir(parents=True, exist_ok=True)
    root = _staging(repo)
    stage = Path(tempfile.mkdtemp(prefix=f"{name}.pid{os.getpid()}.", dir=root))
    try:
        (stage / VERSION_DIR).mkdir()
        shutil.copyfile(onnx_file, stage / VERSION_DIR / MODEL_FILENAME)
        (stage / CONFIG_FILENAME).write_text(config_text(cfg))
        (stage / CARD_FILENAME).write_text(card.to_json())
        for p in stage.rglob("*"):
            if p.is_file():
                with p.open("rb") as f:
                    os.fsync(f.fileno())
        os.chmod(stage, 0o755)
        _swap_in(stage, repo / name)
    except OSError as e:  # a full disk (ENOSPC, EFBIG), a permission: the repository is unchanged
        raise RepositoryError(f"cannot write variant {name!r} into {str(repo)!r}: {e}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        _remove_if_empty(root)
    return repo / name


def write_file(repo: Path, name: str, data: bytes) -> Path:
    """Replace ``repo/name`` with ``data`` atomically (staged and fsynced beside the repository first)."""
    root = _staging(repo)
    fd, tmp = tempfile.mkstemp(prefix=f"{name}.pid{os.getpid()}.", dir=root)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, repo / name)
    except OSError as e:
        raise RepositoryError(f"cannot write {name!r} into {str(repo)!r}: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        _remove_if_empty(root)
    return repo / name


_STAGED_PID = re.compile(r"\.pid(\d+)\.")


def _staging(repo: Path) -> Path:
    """The staging root, created, without what writers that are gone left in it."""
    root = staging_root(repo)
    root.mkdir(exist_ok=True)
    for entry in root.iterdir():
        found = _STAGED_PID.search(entry.name)
        if found is not None and pid_alive(int(found.group(1))):
            continue  # another writer's, still at work
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    return root


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (this one counts; another user's counts too)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _remove_if_empty(root: Path) -> None:
    try:
        root.rmdir()
    except OSError:
        pass


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _swap_in(stage: Path, target: Path) -> None:
    if target.exists():
        if _exchange(stage, target):
            return  # the old variant now lives at ``stage`` and is removed by the caller
        old = stage.with_name(stage.name + ".old")
        os.rename(target, old)
        os.rename(stage, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(stage, target)


def _exchange(a: Path, b: Path) -> bool:
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(rc == 0)
