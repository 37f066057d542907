"""Which attention heads and FFN neurons of a BERT encoder matter (used by ``structured_transformer``).

Importance ("taylor"): every head's context output and every FFN neuron's activation is multiplied by a
gate fixed at 1; a unit's score is the summed squared gradient of ``r . embedding`` (r ~ N(0, I), drawn per
sentence) with respect to its gate, on unlabelled train text. That estimates ``E ||d embedding / d gate||^2``,
the diagonal of the distillation loss's Gauss-Newton matrix: the second-order Taylor cost of removing the
unit (the first-order term against the teacher's own output is zero). "magnitude" uses weight norms.
Allocation "global" ranks units of all layers together (scores are sensitivities of the same output, so
they compare across layers) and keeps the total the per-layer counts imply; sensitive layers keep more.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from compressor.passes.bert_shape import layers as _layers

Batch = tuple[torch.Tensor, torch.Tensor]  # input_ids, attention_mask


def taylor_scores(
    model: nn.Module, batches: Sequence[Batch], seed: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer: summed squared gradients of a random projection of the embedding w.r.t. unit gates."""
    layers = _layers(model)
    head_gates = [torch.ones(la.attention.self.num_attention_heads, requires_grad=True) for la in layers]
    ffn_gates = [torch.ones(la.intermediate.dense.out_features, requires_grad=True) for la in layers]
    hooks = []
    for la, hg, fg in zip(layers, head_gates, ffn_gates, strict=True):
        hooks.append(la.attention.self.register_forward_hook(_gate_heads(hg)))
        hooks.append(la.intermediate.register_forward_hook(lambda _m, _i, out, g=fg: out * g))
    head_sq = [torch.zeros_like(g) for g in head_gates]
    ffn_sq = [torch.zeros_like(g) for g in ffn_gates]
    gen = torch.Generator().manual_seed(seed)
    try:
        for input_ids, mask in batches:
            emb = model(input_ids, mask)
            projection = torch.randn(emb.shape, generator=gen)
            grads = torch.autograd.grad((emb * projection).sum(), [*head_gates, *ffn_gates])
            for acc, g in zip([*head_sq, *ffn_sq], grads, strict=True):
                acc += g.detach() ** 2
    finally:
        for h in hooks:
            h.remove()
    return head_sq, ffn_sq


def _gate_heads(gate: torch.Tensor) -> Callable[..., Any]:
    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        context, *rest = output
        shape = context.shape
        gated = (context.view(*shape[:-1], gate.numel(), -1) * gate[:, None]).view(shape)
        return (gated, *rest)

    return hook


def magnitude_scores(model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Head: squared norm of its query/key/value rows and output columns; neuron: |w_in| * |w_out|."""
    heads, ffn = [], []
    for la in _layers(model):
        attn = la.attention.self
        n, d = attn.num_attention_heads, attn.attention_head_size
        w = torch.cat([attn.query.weight, attn.key.weight, attn.value.weight], dim=1).detach()
        out_cols = la.attention.output.dense.weight.detach().t()
        heads.append(
            w.view(n, d, -1).pow(2).sum(dim=(1, 2)) + out_cols.reshape(n, d, -1).pow(2).sum(dim=(1, 2))
        )
        ffn.append(
            la.intermediate.dense.weight.detach().norm(dim=1) * la.output.dense.weight.detach().norm(dim=0)
        )
    return heads, ffn


def select(scores: list[torch.Tensor], target: list[int], minimum: int, allocation: str) -> list[list[int]]:
    """Sorted indices kept per layer: the top ``target[i]`` of each layer, or (global) the top ``sum(target)``
    over all layers with at least ``minimum`` per layer."""
    if allocation == "per_layer":
        return [sorted(torch.topk(s, k).indices.tolist()) for s, k in zip(scores, target, strict=True)]
    minimum = min(minimum, *target)  # a total below minimum x layers still gets honoured
    keep = [set(torch.topk(s, minimum).indices.tolist()) for s in scores]
    budget = sum(target) - sum(map(len, keep))
    ranked = sorted(
        (
            (float(v), i, j)
            for i, s in enumerate(scores)
            for j, v in enumerate(s.tolist())
            if j not in keep[i]
        ),
        reverse=True,
    )
    for _, i, j in ranked[: max(0, budget)]:
        keep[i].add(j)
    return [sorted(k) for k in keep]
