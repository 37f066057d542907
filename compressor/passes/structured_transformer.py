"""Structured cuts of a BERT encoder (whole layers, attention heads, FFN neurons), then distillation.

A cut keeps ``keep_layers`` of the teacher's encoder layers (all by default) and, in each kept layer,
``keep_heads_per_layer`` heads and ``keep_ffn_per_layer`` FFN neurons. Importance ("taylor" or
"magnitude") and allocation ("per_layer" or "global", units of all layers ranked together) are
``transformer_importance``'s; heads and neurons are scored after layers are dropped.

Pruning is physical: dropped layers leave the ``ModuleList``; query/key/value lose output rows, the
attention output projection loses input columns, the intermediate dense loses rows, the FFN output dense
loses columns, and ``num_attention_heads`` / ``all_head_size`` are updated, so the exported ONNX graph
really is smaller.

The student is then distilled from the teacher (``transformer_distil``) on every named text set given
(docstrings, general English, ...): each set is shuffled, its first ``validation_size`` sentences are
held out of training as that set's validation split, and training batches alternate between the sets.
Seeded throughout: same inputs, same student.

The fallback ladder (``ladder``) is the source's: ``fallbacks`` lists the rungs after the first, each a
set of overrides (a cut, a budget); the MiniLM source takes its ladder from the frontier it measured.

The model must look like ``compressor.sources.minilm.MiniLMEmbedder``: ``.bert.encoder.layer[i]`` BERT
layers, ``hidden_states(input_ids, attention_mask, all_layers)`` and ``pool(hidden, attention_mask)``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from compressor.passes import transformer_importance as importance
from compressor.passes.bert_shape import keep_layers, prune_ffn, prune_heads
from compressor.passes.bert_shape import layers as _layers
from compressor.passes.structured import NoMoreRungs
from compressor.passes.structured_cnn import seeded_torch
from compressor.passes.transformer_distil import Validation, distil

Batch = importance.Batch
Texts = Sequence[str] | Mapping[str, Sequence[str]]
StructuredFn = Callable[[nn.Module, dict[str, Any], int], tuple[nn.Module, dict[str, Any]]]


class StructuredTransformerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep_layers: list[int] | None = Field(
        None,
        description="Teacher encoder layers the student keeps, in order (None: all). Each kept layer is "
        "distilled towards the teacher layer it came from.",
    )
    keep_heads_per_layer: int | list[int] | None = Field(
        None,
        description="Attention heads kept in each kept layer (one int for all, one per kept layer, or None: "
        "all).",
    )
    keep_ffn_per_layer: int | list[int] | None = Field(
        None,
        description="FFN (intermediate) neurons kept in each kept layer (one int, one per layer, or None).",
    )
    allocation: Literal["global", "per_layer"] = Field(
        "global",
        description="'global': the keep counts only fix the total, units are ranked across layers (at least "
        "min_heads_per_layer / min_ffn_per_layer each); 'per_layer': keep exactly the given count in each "
        "layer.",
    )
    min_heads_per_layer: int = Field(
        2, ge=1, description="Fewest heads any layer keeps under global allocation."
    )
    min_ffn_per_layer: int = Field(
        128, ge=1, description="Fewest FFN neurons any layer keeps under global allocation."
    )
    importance: Literal["taylor", "magnitude"] = Field(
        "taylor", description="'taylor' (gradient x activation, data-driven) or 'magnitude' (weight norms)."
    )
    importance_batches: int = Field(
        16, ge=1, description="Batches of train text used to score heads and neurons."
    )
    distil_steps: int = Field(4000, ge=0, description="Most distillation optimizer steps.")
    batch_size: int = Field(32, ge=1, description="Sentences per distillation (and scoring) batch.")
    lr: float = Field(5e-4, gt=0.0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay.")
    warmup_fraction: float = Field(
        0.06, ge=0.0, lt=1.0, description="Share of the steps with linear LR warm-up."
    )
    max_seq_len: int = Field(128, ge=8, description="Sentences are truncated at this many tokens.")
    embedding_loss_weight: float = Field(
        1.0, ge=0.0, description="Weight of (1 - cosine) on final embeddings."
    )
    hidden_loss_weight: float = Field(
        2.0, ge=0.0, description="Weight of the hidden-state MSE of matched layers."
    )
    train_embeddings: bool = Field(
        False,
        description="Also train the token/position embeddings (5x slower steps: a dense 30522x384 update).",
    )
    validation_size: int = Field(
        256, ge=0, description="Sentences of each text set held out of training to watch the student."
    )
    eval_every: int = Field(250, ge=1, description="Steps between validation scores (learning curve).")
    target_cosine: float | None = Field(
        None, gt=0.0, le=1.0, description="Stop once the worse validation set reaches this mean cosine."
    )
    patience: int = Field(
        4, ge=0, description="Stop after this many validations without a gain of min_delta (0: never)."
    )
    min_delta: float = Field(0.0005, ge=0.0, description="Smallest validation gain that counts.")
    bf16: bool | None = Field(
        None,
        description="Distil under bfloat16 autocast (about 2x faster where the CPU has AVX512-BF16; "
        "fp32 master weights). None = on exactly when torch reports AVX512-BF16 support.",
    )
    fallbacks: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The fallback ladder after attempt 0: each rung overrides these settings (a cut, a "
        "budget). A source sets it from the frontier it measured.",
    )
    seed: int = Field(0, description="Seed for scoring projections, batch order and the torch RNG.")
    threads: int = Field(2, ge=1, description="torch intra-op threads while scoring and distilling.")


def ladder(base: StructuredTransformerConfig, attempt: int) -> StructuredTransformerConfig:
    """Config for fallback ``attempt``: 0 = base; then ``base.fallbacks`` in order."""
    if not 0 <= attempt <= len(base.fallbacks):
        raise ValueError(f"structured fallback attempt {attempt} out of range 0..{len(base.fallbacks)}")
    if attempt == 0:
        return base
    return StructuredTransformerConfig.model_validate({**base.model_dump(), **base.fallbacks[attempt - 1]})


def apply(
    teacher: nn.Module,
    tokenizer: Any,
    texts: Texts,
    config: StructuredTransformerConfig,
    name: str = "distil",
    attempt: int = 0,
) -> tuple[nn.Module, dict[str, Any]]:
    """Cut and distil a copy of ``teacher`` (left untouched, in eval mode) on ``texts`` (one list, or
    named sets); ``name`` labels the progress display."""
    sets = (
        {"train": list(texts)} if not isinstance(texts, Mapping) else {k: list(v) for k, v in texts.items()}
    )
    n_layers = len(_layers(teacher))
    kept_layers = list(config.keep_layers) if config.keep_layers is not None else list(range(n_layers))
    started = time.monotonic()
    with seeded_torch(config.seed, config.threads):
        teacher.eval()
        train, validation = _split(tokenizer, sets, config)
        if len(train) == 0:
            raise ValueError(f"need at least batch_size={config.batch_size} train texts, got {sets.keys()}")
        student = copy.deepcopy(teacher).eval()
        params_before = _count(student)
        keep_layers(student, kept_layers)
        first = _layers(student)[0]
        n_heads, n_ffn = first.attention.self.num_attention_heads, first.intermediate.dense.out_features
        keep_heads = _per_layer(config.keep_heads_per_layer, len(kept_layers), n_heads, "heads")
        keep_ffn = _per_layer(config.keep_ffn_per_layer, len(kept_layers), n_ffn, "FFN")
        if config.importance == "taylor":
            head_scores, ffn_scores = importance.taylor_scores(
                student, train[: config.importance_batches], config.seed
            )
        else:
            head_scores, ffn_scores = importance.magnitude_scores(student)
        kept_heads = importance.select(head_scores, keep_heads, config.min_heads_per_layer, config.allocation)
        kept_ffn = importance.select(ffn_scores, keep_ffn, config.min_ffn_per_layer, config.allocation)
        for layer, heads, neurons in zip(_layers(student), kept_heads, kept_ffn, strict=True):
            if len(heads) < n_heads:
                prune_heads(layer, heads)
            if len(neurons) < n_ffn:
                prune_ffn(layer, torch.tensor(neurons, dtype=torch.long))
        scored = time.monotonic()
        outcome = distil(
            teacher,
            student,
            train,
            kept_layers,
            config,
            Validation(teacher, validation),
            _use_bf16(config),
            name,
            attempt,
        )
    finished = time.monotonic()
    return student.eval(), {
        "kept_layers": kept_layers,
        "kept_heads": kept_heads,
        "heads_per_layer": [len(h) for h in kept_heads],
        "ffn_per_layer": [len(f) for f in kept_ffn],
        "params_before": params_before,
        "params_after": _count(student),
        "importance": config.importance,
        "allocation": config.allocation,
        "text_sets": {k: len(v) for k, v in sets.items()},
        "bf16": _use_bf16(config),
        **outcome.info(),
        "score_seconds": round(scored - started, 2),
        "distil_seconds": round(finished - scored, 2),
        "settings": config.model_dump(),
    }


def make_structured(tokenizer: Any, texts: Texts, defaults: dict[str, Any] | None = None) -> StructuredFn:
    """The ``Source.structured`` callable: settings override ``defaults``; ``attempt`` walks the ladder."""
    base_defaults = dict(defaults or {})
    StructuredTransformerConfig.model_validate(base_defaults)  # fail at source build time on a bad key
    kept: Texts = dict(texts) if isinstance(texts, Mapping) else list(texts)

    def structured(
        teacher: nn.Module, settings: dict[str, Any], attempt: int
    ) -> tuple[nn.Module, dict[str, Any]]:
        base = StructuredTransformerConfig.model_validate({**base_defaults, **(settings or {})})
        if attempt > len(base.fallbacks):
            raise NoMoreRungs(f"the ladder has {1 + len(base.fallbacks)} rungs")
        config = ladder(base, attempt)
        student, info = apply(teacher, tokenizer, kept, config, f"distil rung {attempt}", attempt)
        info["attempt"] = attempt
        return student, info

    return structured


def _split(
    tokenizer: Any, sets: Mapping[str, Sequence[str]], config: StructuredTransformerConfig
) -> tuple[list[Batch], dict[str, list[Batch]]]:
    """Training batches alternating between the sets, and each set's validation batches."""
    rng = np.random.default_rng(config.seed)
    per_set: list[list[Batch]] = []
    validation: dict[str, list[Batch]] = {}
    for name in sets:
        texts = [sets[name][i] for i in rng.permutation(len(sets[name]))]
        held = (
            texts[: config.validation_size] if len(texts) > config.validation_size + config.batch_size else []
        )
        validation[name] = _pad_batches(tokenizer, held, config) if held else []
        per_set.append(_batches(tokenizer, texts[len(held) :], config))
    train = [b for group in zip(*_cycle_to_longest(per_set), strict=True) for b in group]
    return train, validation


def _cycle_to_longest(groups: list[list[Batch]]) -> list[list[Batch]]:
    longest = max((len(g) for g in groups), default=0)
    return [[g[i % len(g)] for i in range(longest)] for g in groups if g]


def _per_layer(keep: int | list[int] | None, n_layers: int, full: int, what: str) -> list[int]:
    values = keep if isinstance(keep, list) else [full if keep is None else keep] * n_layers
    if len(values) != n_layers:
        raise ValueError(f"keep {what} per layer lists {len(values)} values for {n_layers} layers: {values}")
    bad = [v for v in values if not 1 <= v <= full]
    if bad:
        raise ValueError(f"keep {what} per layer must be in 1..{full}, got {bad}")
    return values


def _batches(tokenizer: Any, texts: Sequence[str], config: StructuredTransformerConfig) -> list[Batch]:
    """Seeded, length-bucketed batches: shuffle, sort chunks of 50 batches by length, shuffle the batches."""
    rng = np.random.default_rng(config.seed)
    ids = tokenizer(list(texts), max_length=config.max_seq_len, truncation=True)["input_ids"]
    order = rng.permutation(len(ids))
    chunk = config.batch_size * 50
    groups: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort([len(ids[i]) for i in part], kind="stable")]
        groups += [part[i : i + config.batch_size] for i in range(0, len(part), config.batch_size)]
    groups = [g for g in groups if len(g) == config.batch_size] or groups
    return [_pad([ids[i] for i in g]) for g in (groups[i] for i in rng.permutation(len(groups)))]


def _pad_batches(tokenizer: Any, texts: Sequence[str], config: StructuredTransformerConfig) -> list[Batch]:
    """Every text once, in batches of similar length (validation: order does not matter, padding does)."""
    ids = tokenizer(list(texts), max_length=config.max_seq_len, truncation=True)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    return [
        _pad([ids[i] for i in order[s : s + config.batch_size]])
        for s in range(0, len(order), config.batch_size)
    ]


def _pad(rows: Sequence[Sequence[int]]) -> Batch:
    tensors = [torch.tensor(r, dtype=torch.long) for r in rows]
    pad = nn.utils.rnn.pad_sequence
    return pad(tensors, batch_first=True), pad([torch.ones_like(t) for t in tensors], batch_first=True)


def _use_bf16(config: StructuredTransformerConfig) -> bool:
    if config.bf16 is not None:
        return config.bf16
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # private in torch 2.x: probe, don't rely
    return bool(probe()) if callable(probe) else False


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
