"""The compressor pipeline: build every variant of one source, gate it, profile it, write it atomically.

It iterates the recipes (``compressor.recipes``) and owns file I/O: each recipe's ladder is handed its
upstream's ONNX file from the pipeline's own work directory, never from the repository being written.
Variants already in the repository with the same build key are skipped (re-running is idempotent); an
upstream that is up to date but needed by a variant being rebuilt is taken from the artefact cache
(``compressor.artefacts``: every gated result, keyed by build key) or, on a miss, built again in the work
directory (deterministically, so the same file). A variant that fails its gate along the whole fallback
ladder is left out and the reason recorded in ``<repo>/varigate_build.json``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compressor import evaluate, recipes
from compressor.artefacts import ArtefactCache
from compressor.config import BuildConfig
from compressor.gate import Gated, GateFailed, Judge
from compressor.passes import int8_dynamic
from compressor.profile import profile
from compressor.provenance import build_key, environment
from compressor.recipes import Inputs, Recipe, SkipVariant
from compressor.repository import check_writable, is_up_to_date, model_config, write_file, write_variant
from compressor.source import Source
from varigate.contract.card import Accuracy, Gate, VariantCard, read_card
from varigate.contract.layout import BUILD_REPORT_FILENAME, model_name
from varigate.contract.variants import REFERENCE_VARIANT

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


class _Run:
    def __init__(self, source: Source, repo: Path, config: BuildConfig, work: Path, log: Log) -> None:
        self.source, self.repo, self.config, self.work, self.log = source, repo, config, work, log
        self.env = environment()
        self.judge = Judge(source, log)
        self.keys: dict[str, str] = {}
        self.cards: dict[str, VariantCard] = {}
        self._made: dict[str, Gated | SkipVariant | GateFailed] = {}
        self.cache = ArtefactCache.from_env(log)

    def name(self, variant: str) -> str:
        return model_name(self.source.logical_model, variant)

    def key(self, recipe: Recipe) -> str:
        if recipe.variant not in self.keys:
            upstream = self.key(recipes.recipe(recipe.upstream)) if recipe.upstream else ""
            self.keys[recipe.variant] = build_key(self.source, recipe, self.config, upstream)
        return self.keys[recipe.variant]

    def make(self, recipe: Recipe) -> Gated:
        """The recipe's variant built into the work directory, once; raises SkipVariant or GateFailed."""
        if recipe.variant not in self._made:
            try:
                self._made[recipe.variant] = self._make(recipe)
            except (SkipVariant, GateFailed) as e:
                self._made[recipe.variant] = e
        made = self._made[recipe.variant]
        if isinstance(made, Exception):
            raise made
        return made

    def _make(self, recipe: Recipe) -> Gated:
        cached = self.cache.load(self.key(recipe), self.work, recipe.variant) if self.cache else None
        if cached is not None:
            self.log(f"{self.name(recipe.variant)}: from the artefact cache ({self.key(recipe)[:12]})")
            if recipe.upstream is None:
                return self.judge.reference(cached.result)  # the judge needs the reference's outputs
            self.make(recipes.recipe(REFERENCE_VARIANT))  # the card's loss is against the reference
            return cached
        made = self._build(recipe)
        if self.cache:
            self.cache.store(self.key(recipe), made)
        return made

    def _build(self, recipe: Recipe) -> Gated:
        upstream = self._upstream(recipe.upstream) if recipe.upstream else None
        candidates = recipe.ladder(Inputs(self.source, upstream, self.work, self.config, self.log))
        if recipe.upstream is None:
            return self.judge.reference(next(candidates))
        self.make(recipes.recipe(REFERENCE_VARIANT))
        return self.judge.gate(recipe.variant, recipe.gate(self.config) or 0.0, candidates)

    def _upstream(self, variant: str) -> Path:
        try:
            return self.make(recipes.recipe(variant)).result.path
        except (SkipVariant, GateFailed):
            raise SkipVariant(f"needs the {variant} variant, which was not built") from None

    def speed_notes(self, recipe: Recipe, points: list[Any]) -> list[str]:
        """Say plainly, in the card, how this variant's throughput compares with fp32's on this machine."""
        ref = self.cards.get(REFERENCE_VARIANT)
        if recipe.upstream is None or ref is None:
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
            f"{word} than {REFERENCE_VARIANT} on this CPU: {ratio:.2f}x {REFERENCE_VARIANT} throughput at "
            f"batch {bs} (profiled separately; see docs/BENCHMARKS.md for side-by-side ratios)"
        ]

    def write(self, recipe: Recipe, made: Gated) -> VariantCard:
        src, variant, onnx_path, settings = (
            self.source,
            recipe.variant,
            made.result.path,
            made.result.settings,
        )
        points, conditions = profile(
            onnx_path, src.profile_feeds, src.serving.max_batch_size, self.config.profile
        )
        notes = [
            *(src.notes if recipe.source_notes else []),
            *recipe.notes,
            *self.speed_notes(recipe, points),
        ]
        dependence: dict[str, Any] = {}
        if settings.get("pass") == int8_dynamic.NAME and src.task == "embedding":
            dependence = evaluate.batch_dependence(onnx_path, src.eval_batches)
            notes.append(
                "int8 dynamic: activation scales are computed per batch, so outputs depend on "
                "batch-mates (worst cosine alone vs batched "
                f"{dependence['min_cosine_alone_vs_batched']:.4f})"
            )
        limit = recipe.gate(self.config) or 0.0
        score, reference = made.score, self.judge.reference_value
        loss = evaluate.relative_loss(score.value, reference)
        card = VariantCard(
            logical_model=src.logical_model,
            variant=variant,
            model_name=self.name(variant),
            task=src.task,
            accuracy=Accuracy(score.metric, score.value, reference, loss, dict(score.extra)),
            gate=Gate(limit, True, f"relative loss {loss:.2%} <= {limit:.0%}", made.attempts),
            profile=points,
            profile_conditions={**src.profile_conditions, **conditions},
            size_bytes=onnx_path.stat().st_size,
            settings=settings,
            environment=self.env,
            build_key=self.key(recipe),
            notes=notes,
            batch_dependence=dependence,
        )
        cfg = model_config(self.name(variant), src.logical_model, variant, src.serving)
        write_variant(self.repo, self.name(variant), onnx_path, cfg, card)
        return card

    def build(self, recipe: Recipe) -> VariantResult:
        variant, name = recipe.variant, self.name(recipe.variant)
        if not self.config.force and is_up_to_date(self.repo, name, self.key(recipe)):
            self.cards[variant] = card = read_card(self.repo / name)
            self.log(f"{name}: up to date, skipped")
            return VariantResult(variant, name, "up-to-date", card=card)
        self.log(f"{name}: building")
        try:
            made = self.make(recipe)
        except SkipVariant as e:
            return VariantResult(variant, name, "skipped", reason=str(e))
        except GateFailed as e:
            reason = (
                f"failed its accuracy gate on every rung of the fallback ladder ({len(e.attempts)} tried)"
            )
            return VariantResult(variant, name, "failed", reason=reason, attempts=e.attempts)
        self.cards[variant] = card = self.write(recipe, made)
        return VariantResult(variant, name, "built", card=card, attempts=made.attempts)


def build(source: Source, repo: Path, config: BuildConfig, log: Log = print) -> list[VariantResult]:
    check_writable(repo)
    results: list[VariantResult] = []
    with tempfile.TemporaryDirectory(prefix="varigate-compress-") as tmp:
        run = _Run(source, repo, config, Path(tmp), log)
        for recipe in map(recipes.recipe, config.variants):
            t0 = time.monotonic()
            result = run.build(recipe)
            if result.status != "up-to-date":
                result.seconds = time.monotonic() - t0
            results.append(result)
            if recipe.upstream is None and result.status in ("failed", "skipped"):
                break
        _write_report(repo, source, results)
    return results


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
