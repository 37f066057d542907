"""``varigate compress`` / ``python -m compressor``: build a model's variants into a repository."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from compressor.config import BuildConfig
from varigate.contract.variants import REFERENCE_VARIANT, VARIANTS

if TYPE_CHECKING:
    from compressor.pipeline import VariantResult
    from compressor.source import Source

SOURCES = ("default", "minilm", "digits", "module", "onnx")

# Small and quick: what the tests build. Real numbers come from the default settings.
FAST = {
    "profile": {"batch_sizes": [1, 8], "warmup": 1, "min_iterations": 3, "max_seconds_per_batch": 0.2},
    "structured_attempts": 1,
    "structured": {
        "minilm": {
            "distil_steps": 8,
            "importance_batches": 1,
            "batch_size": 8,
            "max_seq_len": 32,
            "validation_size": 64,
        }
    },
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="varigate compress", description=__doc__)
    p.add_argument("source", choices=SOURCES, help="default = minilm and digits")
    p.add_argument("--out", type=Path, default=Path("model_repository"), help="repository directory")
    p.add_argument(
        "--config", type=Path, help="BuildConfig as JSON (gate, profile, ladders, structured settings)"
    )
    p.add_argument("--variants", nargs="+", choices=VARIANTS, help="variants to build (the reference always)")
    p.add_argument("--force", action="store_true", help="rebuild variants that are up to date")
    p.add_argument(
        "--fast", action="store_true", help="small data, short distillation, short profiles (tests)"
    )
    p.add_argument("--name", help="logical model name for module/onnx sources")
    p.add_argument("--module", help="torch.nn.Module (or factory) as package.module:attr")
    p.add_argument("--onnx", type=Path, help="an existing fp32 ONNX file")
    p.add_argument(
        "--inputs", type=Path, help=".npz of example/evaluation inputs, arrays named as model inputs"
    )
    p.add_argument("--labels", type=Path, help=".npy of class ids for --inputs rows (gates on top-1)")
    p.add_argument(
        "--plot-dir",
        type=Path,
        help="where the accuracy-vs-latency PNGs go (default: <out>/../docs/plots or <out>)",
    )
    p.add_argument("--quiet", action="store_true")
    return p


def _config(args: argparse.Namespace) -> BuildConfig:
    data: dict[str, Any] = {}
    if args.fast:
        data.update(json.loads(json.dumps(FAST)))
    if args.config:
        try:
            user = json.loads(args.config.read_text())
            for key, value in user.items():  # nested settings merge over the presets
                if isinstance(value, dict) and isinstance(data.get(key), dict):
                    data[key] = {**data[key], **value}
                else:
                    data[key] = value
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read config {str(args.config)!r}: {e}") from None
    if args.variants:
        data["variants"] = args.variants
    if args.force:
        data["force"] = True
    return BuildConfig.model_validate(data)


def _sources(args: argparse.Namespace, config: BuildConfig) -> list[Source]:
    from compressor.sources import custom

    names = ["minilm", "digits"] if args.source == "default" else [args.source]
    out: list[Source] = []
    for name in names:
        if name == "minilm":
            from compressor.sources.minilm import build_minilm_source

            out.append(
                build_minilm_source(max_train=2000, max_heldout=256) if args.fast else build_minilm_source()
            )
        elif name == "digits":
            from compressor.sources.digits import build_digits_source

            out.append(build_digits_source())
        else:
            if not args.name or not args.inputs:
                raise custom.SourceError(f"source {name!r} needs --name and --inputs")
            if name == "onnx":
                if not args.onnx:
                    raise custom.SourceError("source 'onnx' needs --onnx FILE")
                if not args.onnx.is_file():
                    raise custom.SourceError(f"ONNX file {str(args.onnx)!r} does not exist")
                out.append(custom.from_onnx(args.name, args.onnx, args.inputs, args.labels))
            else:
                if not args.module:
                    raise custom.SourceError("source 'module' needs --module package.module:attr")
                out.append(custom.from_module(args.name, args.module, args.inputs, args.labels))
    return out


@contextlib.contextmanager
def _term_unwinds() -> Iterator[None]:
    """SIGTERM (how scripts/run.sh stops the background build) unwinds like Ctrl-C: staging is cleaned
    and each open progress display ends with state=stopped; the exit status stays 128 + 15."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _say(text: str) -> None:
    """The summary on stdout, each line behind VARIGATE_LOG_PREFIX (scripts/run.sh sets "[build] ")."""
    from compressor.progress import prefix

    print("\n".join(prefix() + line for line in text.split("\n")), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from compressor import curves, pipeline, progress, report
    from compressor.repository import check_writable

    log = (lambda s: None) if args.quiet else progress.write
    t0 = time.monotonic()
    try:
        progress.mode()  # a mistyped VARIGATE_PROGRESS(_SECS) fails here, before any compute
        progress.interval()
        config = _config(args)
        check_writable(args.out)  # before any compute
        summaries: list[tuple[Source, list[VariantResult]]] = []
        with _term_unwinds(), progress.silenced() if args.quiet else contextlib.nullcontext():
            for source in _sources(args, config):
                summaries.append((source, pipeline.build(source, args.out, config, log)))
    except Exception as e:
        from compressor.passes.export import ExportError
        from compressor.repository import RepositoryError
        from compressor.sources.custom import SourceError

        known = (ValueError, SourceError, RepositoryError, ExportError, FileNotFoundError, PermissionError)
        if not isinstance(e, known):
            raise
        msg = str(e).strip().splitlines()
        text = " ".join(m.strip() for m in msg[:3])
        print(f"{progress.prefix()}varigate compress: error: {text}", file=sys.stderr)
        return 1
    plot_dir = args.plot_dir or args.out
    for source, results in summaries:
        _say(f"\n{source.logical_model}  ({args.out})\n{report.table(results)}")
        png = report.plot(results, plot_dir / f"{source.logical_model}_accuracy_latency.png")
        if png:
            _say(f"plot: {png}")
        png = curves.plot(results, plot_dir / f"{source.logical_model}_learning_curves.png")
        if png:
            _say(f"learning curves: {png}")
    _say(f"\ndone in {time.monotonic() - t0:.0f} s")
    failed = [
        r
        for _, rs in summaries
        for r in rs
        if r.variant == REFERENCE_VARIANT and r.status not in ("built", "up-to-date")
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
