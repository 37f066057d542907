"""Distil a cut BERT student from its fp32 teacher, watching a validation split, stopping when it is done.

The loss is ``1 - cos`` between the student's and the teacher's final embeddings plus the MSE between
hidden states of *matched* layers over the real tokens: student layer ``j`` is matched with teacher layer
``layer_map[j]`` (the teacher layer it was initialised from; when layers are dropped, the kept ones). The
hidden size is never cut, so matched states compare directly. AdamW with linear warm-up and cosine decay,
dropout off, embedding tables frozen, optionally under bfloat16 autocast (fp32 master weights).

Every ``eval_every`` steps the student is scored on each validation set (mean cosine to the teacher on
sentences held out of training, never the gate's held-out sets), the point goes on the learning curve and
the progress display, and the best state so far (by the *worse* set) is kept. Training stops at the step
budget, when the worse set reaches ``target_cosine``, or after ``patience`` evaluations without a gain of
``min_delta``; the best state is restored either way.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from compressor import progress
from compressor.passes.bert_shape import embedder, embedding_parameters
from compressor.passes.learning_curve import Curve

Batch = tuple[torch.Tensor, torch.Tensor]  # input_ids, attention_mask


class Schedule(Protocol):
    """What ``distil`` reads of ``StructuredTransformerConfig``."""

    distil_steps: int
    lr: float
    weight_decay: float
    warmup_fraction: float
    embedding_loss_weight: float
    hidden_loss_weight: float
    train_embeddings: bool
    eval_every: int
    target_cosine: float | None
    patience: int
    min_delta: float


class Validation:
    """Mean cosine of a student's embeddings to the teacher's, per named set of fixed batches."""

    def __init__(self, teacher: nn.Module, sets: Mapping[str, Sequence[Batch]]) -> None:
        self._sets = {name: list(batches) for name, batches in sets.items() if batches}
        model = embedder(teacher)
        with torch.no_grad():
            self._targets = {
                name: [model.pool(model.hidden_states(i, m)[-1], m) for i, m in batches]
                for name, batches in self._sets.items()
            }

    def __bool__(self) -> bool:
        return bool(self._sets)

    def __call__(self, student: nn.Module) -> dict[str, float]:
        model = embedder(student)
        out: dict[str, float] = {}
        with torch.no_grad():
            for name, batches in self._sets.items():
                cos = [
                    F.cosine_similarity(model.pool(model.hidden_states(i, m)[-1], m), t, dim=1)
                    for (i, m), t in zip(batches, self._targets[name], strict=True)
                ]
                out[name] = float(torch.cat(cos).mean())
        return out


@dataclass
class Outcome:
    losses: list[float]
    curve: Curve
    stopped: str  # "budget", "target" or "plateau"
    best_step: int
    best: dict[str, float]

    def info(self) -> dict[str, Any]:
        return {
            "distil_steps": len(self.losses),
            "stopped": self.stopped,
            "best_step": self.best_step,
            "validation_cosine": dict(self.best),
            "final_loss": float(np.mean(self.losses[-50:])) if self.losses else None,
            "learning_curve": self.curve.as_settings(),
        }


def distil(
    teacher: nn.Module,
    student: nn.Module,
    batches: Sequence[Batch],
    layer_map: Sequence[int],
    config: Schedule,
    validation: Validation,
    bf16: bool,
    name: str = "distil",
    attempt: int = 0,
) -> Outcome:
    """Train ``student`` towards ``teacher`` in place (see the module docstring); the best state is kept."""
    steps, curve = config.distil_steps, Curve(attempt)
    if steps == 0:
        return Outcome([], curve, "budget", 0, validation(student) if validation else {})
    frozen = [] if config.train_embeddings else [p for p in embedding_parameters(student) if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    opt = torch.optim.AdamW(
        [p for p in student.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    warmup = max(1, round(steps * config.warmup_fraction))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1.0 + math.cos(math.pi * s / steps))
    )
    losses: list[float] = []
    best: tuple[float, int, dict[str, float], dict[str, torch.Tensor] | None] = (-math.inf, 0, {}, None)
    stale, stopped = 0, "budget"
    student.eval()  # dropout off: the student should match the teacher's deterministic outputs
    with progress.task(name, total=steps) as bar:
        for step in range(1, steps + 1):
            loss = _loss(teacher, student, batches[(step - 1) % len(batches)], layer_map, config, bf16)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            curve.loss(losses[-1])
            if not validation or (step % config.eval_every and step != steps):
                bar.update(loss=losses[-1])
                continue
            scores = validation(student)
            curve.point(step, scores)
            worst = min(scores.values())
            shown: dict[str, float] = {"loss": losses[-1], **{f"cos_{k}": v for k, v in scores.items()}}
            bar.update(1, **shown)
            if worst > best[0] + config.min_delta:
                best, stale = (worst, step, scores, copy.deepcopy(student.state_dict())), 0
            else:
                stale += 1
            if config.target_cosine is not None and worst >= config.target_cosine:
                stopped = "target"
                break
            if config.patience and stale >= config.patience:
                stopped = "plateau"
                break
    if best[3] is not None:
        student.load_state_dict(best[3])
    for p in frozen:
        p.requires_grad_(True)
    return Outcome(losses, curve, stopped, best[1] or len(losses), best[2])


def _loss(
    teacher: nn.Module,
    student: nn.Module,
    batch: Batch,
    layer_map: Sequence[int],
    config: Schedule,
    bf16: bool,
) -> torch.Tensor:
    input_ids, mask = batch
    t_model, s_model = embedder(teacher), embedder(student)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        with torch.no_grad():
            t_hidden = [h.float() for h in t_model.hidden_states(input_ids, mask, all_layers=True)]
        s_hidden = [h.float() for h in s_model.hidden_states(input_ids, mask, all_layers=True)]
    t_emb, s_emb = t_model.pool(t_hidden[-1], mask), s_model.pool(s_hidden[-1], mask)
    loss = config.embedding_loss_weight * (1.0 - F.cosine_similarity(s_emb, t_emb, dim=1)).mean()
    if config.hidden_loss_weight > 0 and layer_map:
        weights = mask.unsqueeze(-1).to(t_emb.dtype) / (mask.sum() * t_emb.shape[-1] * len(layer_map))
        hidden = sum(
            ((s_hidden[j + 1] - t_hidden[t + 1]).pow(2) * weights).sum() for j, t in enumerate(layer_map)
        )
        loss = loss + config.hidden_loss_weight * hidden
    return loss
