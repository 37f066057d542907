"""The compressor pipeline: build every variant of one source, gate it, profile it, write it atomically.

Owns file I/O; the passes stay pure. Variants already in the repository with the same build key are
skipped (re-running is idempotent); a variant that fails its gate along the whole fallback ladder is left
out and the reason recorded in ``<repo>/varigate_build.json``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compressor import evaluate, variants
from compressor.config import BuildConfig
from compressor.cpu import cpu_flags
from compressor.passes import export
from compressor.profile import profile
from compressor.repository import (
    check_writable,
    is_up_to_date,
    model_config,
    write_file,
    write_variant,
)
from compressor.source import Source
from varigate.contract.card import Accuracy, Gate, VariantCard, read_card
from varigate.contract.layout import BUILD_REPORT_FILENAME, model_file, model_name

COMPRESSOR_VERSION = "1"
Log = Callable[[str], None]


@dataclass
class VariantResult:
    variant: str
    model_name: str
    status: str  # "built", "up-to-date", "failed", "skipped"
    reason: str = ""
    card: VariantCard | None = None
    seconds: float = 0.0
    attempts: list[dict[str, Any]] = field(default_factory=list)


def environment() -> dict[str, Any]:
    import onnx
    import onnxruntime

    have = cpu_flags()
    flags = sorted(f for f in have if f.startswith(("avx", "fma", "sse4", "amx")) or "vnni" in f)
    env: dict[str, Any] = {
        "cpu_flags": flags,
        "vnni": any("vnni" in f for f in flags),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "compressor": COMPRESSOR_VERSION,
    }
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:
        pass
    return env


def build_key(source: Source, variant: str, config: BuildConfig, upstream: str = "") -> str:
    from compressor.passes.int8_dynamic import resolve

    int8 = resolve(config.int8_dynamic).model_dump()
    relevant = {
        "fp32": {},
        "fp16": {},
        "int8": {"int8": int8, "mode": source.int8_mode},
        "pruned": {"prune": config.prune.model_dump()},
        "pruned-structured": {
            "structured": config.structured.get(source.logical_model, {}),
            "attempts": config.structured_attempts,
        },
        "pruned-structured-int8": {"int8": int8, "mode": source.int8_mode},
    }[variant]
    blob = json.dumps(
        {
            "source": source.fingerprint,
            "variant": variant,
            "settings": relevant,
            "gate": config.gate.max_relative_loss.get(variant),
            "upstream": upstream,
            "compressor": COMPRESSOR_VERSION,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class _Run:
    def __init__(self, source: Source, repo: Path, config: BuildConfig, work: Path, log: Log) -> None:
        self.source, self.repo, self.config, self.work, self.log = source, repo, config, work, log
        self.env = environment()
        self._reference: np.ndarray | None = None
        self.ref_value = 0.0

    def name(self, variant: str) -> str:
        return model_name(self.source.logical_model, variant)

    def reference(self, fp32: Path) -> np.ndarray:
        if self._reference is None:
            self._reference = evaluate.run_batches(fp32, self.source.eval_batches)
            self.ref_value = self.score(self._reference).value
        return self._reference

    def score(self, outputs: np.ndarray) -> evaluate.Score:
        if self.source.task == "classification":
            assert self.source.eval_labels is not None
            return evaluate.top1(outputs, self.source.eval_labels)
        assert self._reference is not None
        return evaluate.fidelity(outputs, self._reference)

    def gate(
        self, variant: str, fp32: Path, candidates: Iterator[variants.Candidate]
    ) -> tuple[Path | None, dict[str, Any], list[dict[str, Any]], evaluate.Score | None]:
        """Try candidates in order; return the first that passes, with every attempt recorded."""
        self.reference(fp32)
        limit = self.config.gate.max_relative_loss.get(variant, 0.0)
        attempts: list[dict[str, Any]] = []
        for path, settings in candidates:
            try:
                score = self.score(evaluate.run_batches(path, self.source.eval_batches))
            except Exception as e:  # noqa: BLE001 - a candidate that fails to load or run fails its rung
                attempts.append(
                    {"settings": settings, "passed": False, "error": f"{type(e).__name__}: {e}"[:500]}
                )
                self.log(f"  {variant}: candidate failed to run: {e}")
                continue
            loss = evaluate.relative_loss(score.value, self.ref_value)
            ok = loss <= limit
            attempts.append(
                {
                    "settings": settings,
                    score.metric: score.value,
                    "relative_loss": loss,
                    "passed": ok,
                    **score.extra,
                }
            )
            self.log(
                f"  {variant}: {score.metric}={score.value:.4f} loss={loss:.2%} (limit {limit:.0%}) "
                f"{'pass' if ok else 'fail'}"
            )
            if ok:
                return path, settings, attempts, score
        return None, {}, attempts, None

    def speed_notes(self, variant: str, points: list[Any]) -> list[str]:
        """Say plainly, in the card, how this variant's throughput compares with fp32's on this machine."""
        if variant == "fp32":
            return []
        try:
            ref = read_card(self.repo / self.name("fp32"))
        except Exception:  # noqa: BLE001 - no fp32 card: nothing to compare against
            return []
        mine = {p.batch_size: p.throughput_per_s for p in points}
        theirs = {p.batch_size: p.throughput_per_s for p in ref.profile}
        common = sorted(set(mine) & set(theirs))
        if not common:
            return []
        bs = 8 if 8 in common else common[-1]
        ratio = mine[bs] / theirs[bs]
        word = "faster" if ratio >= 1.05 else "slower" if ratio <= 0.95 else "about as fast"
        return [
            f"{word} than fp32 on this CPU: {ratio:.2f}x fp32 throughput at batch {bs} (profiled separately; "
            "see docs/BENCHMARKS.md for side-by-side ratios)"
        ]

    def write(
        self,
        variant: str,
        onnx_path: Path,
        settings: dict[str, Any],
        attempts: list[dict[str, Any]],
        score: evaluate.Score,
        key: str,
        notes: list[str],
    ) -> VariantCard:
        src = self.source
        points, conditions = profile(
            onnx_path, src.profile_feeds, src.serving.max_batch_size, self.config.profile
        )
        notes = [*notes, *self.speed_notes(variant, points)]
        limit = self.config.gate.max_relative_loss.get(variant, 0.0)
        loss = evaluate.relative_loss(score.value, self.ref_value)
        dependence: dict[str, Any] = {}
        if "dynamic" in str(settings.get("pass", "")) and src.task == "embedding":
            dependence = evaluate.batch_dependence(onnx_path, src.eval_batches)
            notes = [
                *notes,
                "int8 dynamic: activation scales are computed per batch, so outputs depend on "
                "batch-mates (worst cosine alone vs batched "
                f"{dependence['min_cosine_alone_vs_batched']:.4f})",
            ]
        card = VariantCard(
            logical_model=src.logical_model,
            variant=variant,
            model_name=self.name(variant),
            task=src.task,
            accuracy=Accuracy(score.metric, score.value, self.ref_value, loss, dict(score.extra)),
            gate=Gate(limit, True, f"relative loss {loss:.2%} <= {limit:.0%}", attempts),
            profile=points,
            profile_conditions={**src.profile_conditions, **conditions},
            size_bytes=onnx_path.stat().st_size,
            settings=settings,
            environment=self.env,
            build_key=key,
            notes=notes,
            batch_dependence=dependence,
        )
        cfg = model_config(self.name(variant), src.logical_model, variant, src.serving)
        write_variant(self.repo, self.name(variant), onnx_path, cfg, card)
        return card


def build(source: Source, repo: Path, config: BuildConfig, log: Log = print) -> list[VariantResult]:
    check_writable(repo)
    results: list[VariantResult] = []
    with tempfile.TemporaryDirectory(prefix="varigate-compress-") as tmp:
        run = _Run(source, repo, config, Path(tmp), log)
        keys: dict[str, str] = {}
        for variant in config.variants:
            upstream = (
                keys.get("pruned-structured", "")
                if variant == "pruned-structured-int8"
                else keys.get("fp32", "")
            )
            keys[variant] = key = build_key(source, variant, config, upstream if variant != "fp32" else "")
            t0 = time.monotonic()
            name = run.name(variant)
            if not config.force and is_up_to_date(repo, name, key):
                results.append(VariantResult(variant, name, "up-to-date", card=read_card(repo / name)))
                log(f"{name}: up to date, skipped")
                continue
            log(f"{name}: building")
            try:
                result = _build_one(run, variant, key, results)
            except variants.SkipVariant as e:
                result = VariantResult(variant, name, "skipped", reason=str(e))
            result.seconds = time.monotonic() - t0
            results.append(result)
            if variant == "fp32" and result.status != "built":
                break
        _write_report(repo, source, results)
    return results


def _fp32_path(run: _Run) -> Path:
    path = run.work / "fp32.onnx"
    if not path.exists():
        shutil.copyfile(model_file(run.repo / run.name("fp32")), path)
    return path


def _build_one(run: _Run, variant: str, key: str, done: list[VariantResult]) -> VariantResult:
    src, cfg, work = run.source, run.config, run.work
    name = run.name(variant)
    if variant == "fp32":
        path = work / "fp32.onnx"
        if src.onnx_path is not None:
            shutil.copyfile(src.onnx_path, path)
            settings: dict[str, Any] = {"pass": "copy of the given ONNX file", "source": str(src.onnx_path)}
        else:
            variants._export(src, src.torch_module, path)
            diff = export.parity(
                src.torch_module, path, [src.example_inputs, *src.eval_batches[:2]], cfg.parity_atol
            )
            settings = {"pass": "torch.onnx.export (TorchScript), opset 17", "parity_max_abs_diff": diff}
            run.log(f"  fp32: export parity max |onnx - torch| = {diff:.2e}")
        ref = run.reference(path)
        score = run.score(ref)
        card = run.write("fp32", path, settings, [], score, key, list(src.notes))
        return VariantResult(variant, name, "built", card=card)
    fp32 = _fp32_path(run)
    if variant == "fp16":
        cands = variants.fp16_candidates(src, fp32, work, cfg)
    elif variant == "int8":
        cands = variants.int8_candidates(src, fp32, work, cfg, "int8")
    elif variant == "pruned":
        cands = variants.pruned_candidates(src, fp32, work, cfg)
    elif variant == "pruned-structured":
        cands = variants.structured_candidates(src, fp32, work, cfg)
    else:
        base = work / "pruned-structured.onnx"
        if not base.exists():
            prior = model_file(run.repo / run.name("pruned-structured"))
            if not prior.exists():
                raise variants.SkipVariant("needs the pruned-structured variant, which was not built")
            shutil.copyfile(prior, base)
        cands = variants.int8_candidates(src, base, work, cfg, "structured-int8")
    chosen, settings, attempts, gated = run.gate(variant, fp32, cands)
    if chosen is None or gated is None:
        reason = f"failed its accuracy gate on every rung of the fallback ladder ({len(attempts)} tried)"
        return VariantResult(variant, name, "failed", reason=reason, attempts=attempts)
    if variant == "pruned-structured":
        shutil.copyfile(chosen, work / "pruned-structured.onnx")
    notes = _notes(variant, done)
    card = run.write(variant, chosen, settings, attempts, gated, key, notes)
    return VariantResult(variant, name, "built", card=card, attempts=attempts)


def _notes(variant: str, done: list[VariantResult]) -> list[str]:
    if variant == "pruned":
        return [
            "unstructured sparsity: onnxruntime's dense kernels do not skip zeros, so this variant is not "
            "faster than fp32"
        ]
    if variant == "fp16":
        return [
            "fp16 on onnxruntime's CPU provider: operators without an fp16 CPU kernel stay fp32 behind Casts"
        ]
    return []


def _write_report(repo: Path, source: Source, results: list[VariantResult]) -> None:
    path = repo / BUILD_REPORT_FILENAME
    report: dict[str, Any] = {}
    if path.exists():
        try:
            report = json.loads(path.read_text())
        except json.JSONDecodeError:
            report = {}
    report[source.logical_model] = {
        r.variant: {
            "model_name": r.model_name,
            "status": r.status,
            "reason": r.reason,
            "attempts": r.attempts,
            "seconds": round(r.seconds, 1),
        }
        for r in results
    }
    write_file(
        repo, BUILD_REPORT_FILENAME, json.dumps(report, indent=2, sort_keys=True, default=str).encode()
    )
