"""``varigate triton-repo SRC DST``: the Python-backend form of a varigate (Triton-style) repository.

NVIDIA's container images serve the compressor's repository as it is (``platform: "onnxruntime_onnx"``).
Triton builds without the onnxruntime backend (PyPI's nvidia-pytriton wheel, ``scripts/peers/triton.sh``)
serve it through the Python backend instead; for each model this writes::

    DST/<model>/config.pbtxt        the source's, parsed with Triton's schema: platform cleared,
                                    backend "python", onnxruntime threads/spinning in parameters,
                                    allow_ragged_batch on the inputs the gateway pads, instance_group
                                    and queue delay as given (default: the source's)
    DST/<model>/<version>/model.onnx  linked to the source's file (``copy=True``: copied)
    DST/<model>/<version>/model.py    ``varigate/triton_model.py``, copied
    DST/<model>/varigate_card.json  and any other file of the model directory, copied

docs/triton.md says how to serve it and why outputs are checked against local onnxruntime.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from gateway.config_pbtxt import ConfigError, config_from_proto, parse_config
from varigate import triton_model
from varigate.contract.layout import CONFIG_FILENAME, MODEL_FILENAME

ONNX_PLATFORM = "onnxruntime_onnx"
ONNX_BACKEND = "onnxruntime"
PYTHON_MODEL_FILENAME = "model.py"  # the file Triton's Python backend loads from a version directory


class TritonRepoError(ValueError):
    """SRC, DST or a model cannot be converted; the message names the path or the model."""


def write_python_backend_repo(
    src: Path | str,
    dst: Path | str,
    models: Sequence[str] | None = None,
    *,
    intra_op_threads: int = 1,
    spinning: bool = True,
    max_queue_delay_us: int | None = None,
    instances: int | None = None,
    copy: bool = False,
) -> list[str]:
    """Write the Python-backend form of ``src``'s models (all, or ``models``) into ``dst``; a model
    directory already in ``dst`` is replaced. Returns the names written, in order."""
    source, target = Path(src), Path(dst)
    available = repository_models(source)
    names = list(models) if models else available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise TritonRepoError(f"{source} has no model {', '.join(map(repr, unknown))} (it has {available})")
    if intra_op_threads < 1 or (instances is not None and instances < 1):
        raise TritonRepoError(f"intra_op_threads {intra_op_threads} and instances {instances} must be >= 1")
    if max_queue_delay_us is not None and max_queue_delay_us < 0:
        raise TritonRepoError(f"max_queue_delay_us {max_queue_delay_us} must be >= 0")
    if target.exists() and target.resolve() == source.resolve():
        raise TritonRepoError(f"DST {target} is SRC: write the Python-backend form elsewhere")
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        model_dir = source / name
        cfg = _python_backend_config(model_dir, intra_op_threads, spinning, max_queue_delay_us, instances)
        onnx_file = cfg.parameters[triton_model.PARAM_ONNX_FILE].string_value
        versions = [d for d in sorted(model_dir.iterdir()) if d.name.isdigit() and (d / onnx_file).is_file()]
        if not versions:
            raise TritonRepoError(f"model {name!r}: no {model_dir}/<version>/{onnx_file}")
        _write_model(model_dir, target / name, cfg, versions, copy)
    return names


def repository_models(source: Path) -> list[str]:
    """The model directories (those with a config.pbtxt) of a repository, sorted."""
    if not source.is_dir():
        raise TritonRepoError(f"SRC {source} is not a directory")
    found = sorted(d.name for d in source.iterdir() if (d / CONFIG_FILENAME).is_file())
    if not found:
        raise TritonRepoError(f"SRC {source} is not a model repository: no <model>/{CONFIG_FILENAME} in it")
    return found


def _python_backend_config(
    model_dir: Path,
    intra_op_threads: int,
    spinning: bool,
    max_queue_delay_us: int | None,
    instances: int | None,
) -> mc.ModelConfig:
    path = model_dir / CONFIG_FILENAME
    try:
        cfg = parse_config(path.read_bytes(), model_dir.name, str(path))
        pad_inputs = config_from_proto(cfg, str(path)).pad_inputs  # what the gateway pads, Triton pads
    except ConfigError as e:
        raise TritonRepoError(str(e)) from None
    if not (cfg.platform == ONNX_PLATFORM or (not cfg.platform and cfg.backend == ONNX_BACKEND)):
        raise TritonRepoError(
            f"model {model_dir.name!r} has platform {cfg.platform!r} / backend {cfg.backend!r}; "
            f"only {ONNX_PLATFORM!r} models have a Python-backend form"
        )
    onnx_file = cfg.default_model_filename or MODEL_FILENAME
    cfg.platform, cfg.backend = "", "python"
    cfg.ClearField("default_model_filename")
    cfg.parameters[triton_model.PARAM_INTRA_OP_THREADS].string_value = str(intra_op_threads)
    cfg.parameters[triton_model.PARAM_SPINNING].string_value = "1" if spinning else "0"
    cfg.parameters[triton_model.PARAM_ONNX_FILE].string_value = onnx_file
    if cfg.max_batch_size <= 0:
        cfg.ClearField("dynamic_batching")  # no batch dimension: Triton runs requests one by one
    else:
        for t in cfg.input:
            t.allow_ragged_batch = t.name in pad_inputs
        if max_queue_delay_us is not None:
            cfg.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    if instances is not None:
        del cfg.instance_group[:]
        cfg.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=instances)
    return cfg


def _write_model(model_dir: Path, dst: Path, cfg: mc.ModelConfig, versions: list[Path], copy: bool) -> None:
    """Built beside the repository (outside the directory Triton scans) and renamed in: Triton never sees
    half a model, and an interrupted write leaves nothing inside DST."""
    stage = dst.parent.parent / f".{dst.parent.name}.{dst.name}.partial-{os.getpid()}"
    old = stage.with_name(stage.name + ".old")
    for leftover in (stage, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    stage.mkdir()
    try:
        (stage / CONFIG_FILENAME).write_text(text_format.MessageToString(cfg))
        for extra in model_dir.iterdir():
            if extra.is_file() and extra.name != CONFIG_FILENAME:
                shutil.copy2(extra, stage / extra.name)
        for version in versions:
            out = stage / version.name
            out.mkdir()
            for f in version.iterdir():  # the ONNX file and any external-data files beside it
                if f.name == PYTHON_MODEL_FILENAME:
                    raise TritonRepoError(f"{f}: a {PYTHON_MODEL_FILENAME} would be replaced")
                if copy:
                    shutil.copy2(f, out / f.name)
                else:
                    os.symlink(f.resolve(), out / f.name)
            shutil.copy2(triton_model.__file__, out / PYTHON_MODEL_FILENAME)
        if dst.is_symlink() or dst.is_file():
            dst.unlink()
        elif dst.exists():
            os.rename(dst, old)
        os.rename(stage, dst)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="varigate triton-repo",
        description="Write the Triton Python-backend form of a varigate repository (for Triton builds "
        "without the onnxruntime backend; NVIDIA's images serve SRC as it is).",
    )
    parser.add_argument("src", type=Path, help="the varigate repository (platform onnxruntime_onnx)")
    parser.add_argument("dst", type=Path, help="where to write the Python-backend repository")
    parser.add_argument("--models", nargs="+", metavar="NAME", help="models to convert (default: all)")
    parser.add_argument("--intra-op-threads", type=int, default=1, metavar="N", help="default: 1")
    parser.add_argument(
        "--spinning", action=argparse.BooleanOptionalAction, default=True, help="onnxruntime spinning"
    )
    parser.add_argument("--max-queue-delay-us", type=int, metavar="N", help="default: the source's")
    parser.add_argument("--instances", type=int, metavar="N", help="CPU instances (default: the source's)")
    parser.add_argument("--copy", action="store_true", help="copy model files instead of linking them")
    args = parser.parse_args(argv)
    try:
        names = write_python_backend_repo(
            args.src,
            args.dst,
            args.models,
            intra_op_threads=args.intra_op_threads,
            spinning=args.spinning,
            max_queue_delay_us=args.max_queue_delay_us,
            instances=args.instances,
            copy=args.copy,
        )
    except TritonRepoError as e:
        print(f"varigate triton-repo: {e}", file=sys.stderr)
        return 2
    for name in names:
        print(f"{name} -> {args.dst / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
