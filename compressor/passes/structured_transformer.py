"""Structured pruning of a BERT encoder's attention heads and FFN neurons, then distillation from fp32.

Importance ("taylor" or "magnitude") and allocation ("per_layer" or "global", units of all layers
ranked together) are ``transformer_importance``'s.

Pruning is physical: query/key/value lose output rows, the attention output projection loses input
columns, the intermediate dense loses rows, the FFN output dense loses columns, and ``num_attention_heads``
/ ``all_head_size`` are updated, so the exported ONNX graph really is smaller.

Distillation (dropout off, embedding tables frozen, AdamW with warm-up and cosine decay) minimises
``1 - cos`` between the student's and the teacher's final embeddings plus the MSE between every layer's
hidden states over the real tokens (the hidden size is unchanged, so layers align one to one), on
length-bucketed batches of unlabelled sentences. Seeded throughout: same inputs, same student.

The model must look like ``compressor.sources.minilm.MiniLMEmbedder``: ``.bert.encoder.layer[i]`` BERT
layers, ``hidden_states(input_ids, attention_mask, all_layers)`` and ``pool(hidden, attention_mask)``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F

from compressor.passes import transformer_importance as importance
from compressor.passes.bert_shape import embedder, embedding_parameters, prune_ffn, prune_heads
from compressor.passes.bert_shape import layers as _layers
from compressor.passes.structured_cnn import seeded_torch

Batch = importance.Batch
Progress = Callable[[int, float, nn.Module], None]
StructuredFn = Callable[[nn.Module, dict[str, Any], int], tuple[nn.Module, dict[str, Any]]]
# The ladder: (distillation-step multiplier, share of the default cut that is still cut) per attempt.
_LADDER = ((1.0, 1.0), (1.5, 0.75), (2.0, 0.5), (2.0, 0.25))
LADDER_LENGTH = len(_LADDER)


class StructuredTransformerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep_heads_per_layer: int | list[int] = Field(
        6, description="Attention heads kept in each layer (one int for all layers, or one per layer)."
    )
    keep_ffn_per_layer: int | list[int] = Field(
        768, description="FFN (intermediate) neurons kept in each layer (one int, or one per layer)."
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
    distil_steps: int = Field(
        2500, ge=0, description="Distillation optimizer steps (about 0.2 s each on 2 quiet cores with bf16)."
    )
    batch_size: int = Field(32, ge=1, description="Sentences per distillation (and scoring) batch.")
    lr: float = Field(1e-3, gt=0.0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay.")
    warmup_fraction: float = Field(
        0.06, ge=0.0, lt=1.0, description="Share of the steps with linear LR warm-up."
    )
    max_seq_len: int = Field(128, ge=8, description="Sentences are truncated at this many tokens.")
    embedding_loss_weight: float = Field(
        1.0, ge=0.0, description="Weight of (1 - cosine) on final embeddings."
    )
    hidden_loss_weight: float = Field(2.0, ge=0.0, description="Weight of the per-layer hidden-state MSE.")
    train_embeddings: bool = Field(
        False,
        description="Also train the token/position embeddings (5x slower steps: a dense 30522x384 update).",
    )
    bf16: bool | None = Field(
        None,
        description="Distil under bfloat16 autocast (about 2x faster where the CPU has AVX512-BF16; "
        "fp32 master weights). None = on exactly when torch reports AVX512-BF16 support.",
    )
    seed: int = Field(0, description="Seed for scoring projections, batch order and the torch RNG.")
    threads: int = Field(2, ge=1, description="torch intra-op threads while scoring and distilling.")


def ladder(
    base: StructuredTransformerConfig, attempt: int, n_heads: int, n_ffn: int
) -> StructuredTransformerConfig:
    """Config for fallback ``attempt``: 0 = base; then distil longer and cut less (see ``_LADDER``)."""
    if not 0 <= attempt < LADDER_LENGTH:
        raise ValueError(f"structured fallback attempt {attempt} out of range 0..{LADDER_LENGTH - 1}")
    step_mult, cut_share = _LADDER[attempt]

    def soften(keep: int | list[int], full: int) -> int | list[int]:
        def less(k: int) -> int:
            return round(full - (full - k) * cut_share)

        return [less(k) for k in keep] if isinstance(keep, list) else less(keep)

    heads, ffn = soften(base.keep_heads_per_layer, n_heads), soften(base.keep_ffn_per_layer, n_ffn)
    steps = round(base.distil_steps * step_mult)
    return base.model_copy(
        update={"distil_steps": steps, "keep_heads_per_layer": heads, "keep_ffn_per_layer": ffn}
    )


def apply(
    teacher: nn.Module,
    tokenizer: Any,
    train_texts: Sequence[str],
    config: StructuredTransformerConfig,
    progress: Progress | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Score, prune and distil a copy of ``teacher``; the teacher is left untouched (and in eval mode).
    ``progress(step, loss, student)`` is called after every distillation step (logging, learning curves)."""
    if len(train_texts) < config.batch_size:
        raise ValueError(f"need at least batch_size={config.batch_size} train texts, got {len(train_texts)}")
    layers = _layers(teacher)
    n_heads, n_ffn = layers[0].attention.self.num_attention_heads, layers[0].intermediate.dense.out_features
    keep_heads = _per_layer(config.keep_heads_per_layer, len(layers), n_heads, "heads")
    keep_ffn = _per_layer(config.keep_ffn_per_layer, len(layers), n_ffn, "FFN")
    started = time.monotonic()
    with seeded_torch(config.seed, config.threads):
        teacher.eval()
        batches = _batches(tokenizer, train_texts, config)
        student = copy.deepcopy(teacher).eval()
        params_before = _count(student)
        if config.importance == "taylor":
            head_scores, ffn_scores = importance.taylor_scores(
                student, batches[: config.importance_batches], config.seed
            )
        else:
            head_scores, ffn_scores = importance.magnitude_scores(student)
        kept_heads = importance.select(head_scores, keep_heads, config.min_heads_per_layer, config.allocation)
        kept_ffn = importance.select(ffn_scores, keep_ffn, config.min_ffn_per_layer, config.allocation)
        for layer, heads, neurons in zip(_layers(student), kept_heads, kept_ffn, strict=True):
            prune_heads(layer, heads)
            prune_ffn(layer, torch.tensor(neurons, dtype=torch.long))
        scored = time.monotonic()
        losses = _distil(teacher, student, batches, config, progress)
    finished = time.monotonic()
    return student.eval(), {
        "kept_heads": kept_heads,
        "heads_per_layer": [len(h) for h in kept_heads],
        "ffn_per_layer": [len(f) for f in kept_ffn],
        "params_before": params_before,
        "params_after": _count(student),
        "importance": config.importance,
        "allocation": config.allocation,
        "distil_steps": len(losses),
        "bf16": _use_bf16(config),
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "score_seconds": round(scored - started, 2),
        "distil_seconds": round(finished - scored, 2),
        "settings": config.model_dump(),
    }


def make_structured(
    tokenizer: Any, train_texts: Sequence[str], defaults: dict[str, Any] | None = None
) -> StructuredFn:
    """The ``Source.structured`` callable: settings override ``defaults``; ``attempt`` walks the ladder."""
    base_defaults = dict(defaults or {})
    StructuredTransformerConfig.model_validate(base_defaults)  # fail at source build time on a bad key
    texts = list(train_texts)

    def structured(
        teacher: nn.Module, settings: dict[str, Any], attempt: int
    ) -> tuple[nn.Module, dict[str, Any]]:
        base = StructuredTransformerConfig.model_validate({**base_defaults, **(settings or {})})
        first = _layers(teacher)[0]
        config = ladder(
            base, attempt, first.attention.self.num_attention_heads, first.intermediate.dense.out_features
        )
        student, info = apply(teacher, tokenizer, texts, config)
        info["attempt"] = attempt
        return student, info

    return structured


def _per_layer(keep: int | list[int], n_layers: int, full: int, what: str) -> list[int]:
    values = keep if isinstance(keep, list) else [keep] * n_layers
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
    pad = nn.utils.rnn.pad_sequence
    out = []
    for g in (groups[i] for i in rng.permutation(len(groups))):
        rows = [torch.tensor(ids[i], dtype=torch.long) for i in g]
        out.append((pad(rows, batch_first=True), pad([torch.ones_like(r) for r in rows], batch_first=True)))
    return out


def _distil(
    teacher: nn.Module,
    student: nn.Module,
    batches: Sequence[Batch],
    config: StructuredTransformerConfig,
    progress: Progress | None,
) -> list[float]:
    """``distil_steps`` AdamW steps (linear warm-up, cosine decay); returns the per-step losses."""
    steps = config.distil_steps
    t_model, s_model = embedder(teacher), embedder(student)
    if steps == 0:
        return []
    frozen = [] if config.train_embeddings else [p for p in embedding_parameters(student) if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    opt = torch.optim.AdamW(
        [p for p in student.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    warmup = max(1, round(steps * config.warmup_fraction))

    def schedule(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.5 * (1.0 + math.cos(math.pi * step / steps))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    losses: list[float] = []
    student.eval()  # dropout off: the student should match the teacher's deterministic outputs
    bf16 = _use_bf16(config)
    for step in range(steps):
        input_ids, mask = batches[step % len(batches)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            with torch.no_grad():
                t_hidden = [h.float() for h in t_model.hidden_states(input_ids, mask, all_layers=True)]
            s_hidden = [h.float() for h in s_model.hidden_states(input_ids, mask, all_layers=True)]
        t_emb, s_emb = t_model.pool(t_hidden[-1], mask), s_model.pool(s_hidden[-1], mask)
        loss = config.embedding_loss_weight * (1.0 - F.cosine_similarity(s_emb, t_emb, dim=1)).mean()
        if config.hidden_loss_weight > 0:
            weights = mask.unsqueeze(-1).to(t_emb.dtype) / (
                mask.sum() * t_emb.shape[-1] * (len(s_hidden) - 1)
            )
            hidden = sum(
                ((s - t).pow(2) * weights).sum() for s, t in zip(s_hidden[1:], t_hidden[1:], strict=True)
            )
            loss = loss + config.hidden_loss_weight * hidden
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, losses[-1], student)
    for p in frozen:
        p.requires_grad_(True)
    return losses


def _use_bf16(config: StructuredTransformerConfig) -> bool:
    if config.bf16 is not None:
        return config.bf16
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # private in torch 2.x: probe, don't rely
    return bool(probe()) if callable(probe) else False


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
