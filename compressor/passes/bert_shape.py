"""The shape of the BERT embedder that ``structured_transformer`` prunes, as Protocols.

torch types a submodule reached by attribute (``nn.Module.__getattr__``) as ``Tensor | Module``, so code
that walks ``layer.attention.self.query`` checks nothing. These Protocols name what ``transformers``'
``BertLayer`` and ``compressor.sources.minilm.MiniLMEmbedder`` hold; ``layers`` and ``embedder`` are the
two casts, at the boundary, after ``get_submodule`` has checked the path exists. ``prune_heads`` and
``prune_ffn`` cut a layer physically along that shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, cast

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


class Hookable(Protocol):
    def register_forward_hook(self, hook: Callable[..., Any]) -> RemovableHandle: ...


class SelfAttention(Hookable, Protocol):
    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    num_attention_heads: int
    attention_head_size: int
    all_head_size: int


class Dense(Hookable, Protocol):
    dense: nn.Linear


class Attention(Protocol):
    self: SelfAttention
    output: Dense


class BertLayer(Protocol):
    attention: Attention
    intermediate: Dense
    output: Dense


class Embedder(Protocol):
    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, all_layers: bool = False
    ) -> tuple[torch.Tensor, ...]: ...

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor: ...


def layers(model: nn.Module) -> list[BertLayer]:
    """``model.bert.encoder.layer`` as BERT layers; ``ValueError`` when the model has no such list."""
    try:
        found = model.get_submodule("bert.encoder.layer")
    except AttributeError:
        raise ValueError(
            f"expected a BERT embedder with .bert.encoder.layer, got {type(model).__name__}"
        ) from None
    return cast(list[BertLayer], list(cast(nn.ModuleList, found)))


def embedder(model: nn.Module) -> Embedder:
    """``model`` as an embedder with ``hidden_states`` and ``pool`` (checked here, typed from here on)."""
    if not (callable(getattr(model, "hidden_states", None)) and callable(getattr(model, "pool", None))):
        raise ValueError(f"expected an embedder with hidden_states() and pool(), got {type(model).__name__}")
    return cast(Embedder, model)


def keep_layers(model: nn.Module, keep: list[int]) -> None:
    """Keep only the encoder layers at ``keep`` (teacher indices, in order): the rest are dropped, the
    model's config says how many remain, so an export holds only those layers."""
    found = cast(nn.ModuleList, model.get_submodule("bert.encoder.layer"))
    n = len(found)
    if not keep or sorted(set(keep)) != list(keep) or keep[0] < 0 or keep[-1] >= n:
        raise ValueError(f"keep_layers must be increasing indices in 0..{n - 1}, got {keep}")
    encoder = model.get_submodule("bert.encoder")
    encoder.layer = nn.ModuleList([found[i] for i in keep])
    config = getattr(model.get_submodule("bert"), "config", None)
    if config is not None:
        config.num_hidden_layers = len(keep)


def embedding_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    return model.get_submodule("bert.embeddings").parameters()


def prune_heads(layer: BertLayer, heads: list[int]) -> None:
    """Keep only ``heads`` of the layer's attention: q/k/v lose rows, the output projection columns."""
    attn = layer.attention.self
    d = attn.attention_head_size
    index = torch.cat([torch.arange(h * d, (h + 1) * d) for h in heads])
    for lin in (attn.query, attn.key, attn.value):
        _cut_rows(lin, index)
    _cut_cols(layer.attention.output.dense, index)
    attn.num_attention_heads = len(heads)
    attn.all_head_size = len(heads) * d


def prune_ffn(layer: BertLayer, index: torch.Tensor) -> None:
    """Keep only the FFN neurons at ``index``: the intermediate dense loses rows, the output columns."""
    _cut_rows(layer.intermediate.dense, index)
    _cut_cols(layer.output.dense, index)


def _cut_rows(lin: nn.Linear, index: torch.Tensor) -> None:
    lin.weight = nn.Parameter(lin.weight.detach()[index].clone())
    if lin.bias is not None:
        lin.bias = nn.Parameter(lin.bias.detach()[index].clone())
    lin.out_features = len(index)


def _cut_cols(lin: nn.Linear, index: torch.Tensor) -> None:
    lin.weight = nn.Parameter(lin.weight.detach()[:, index].clone())
    lin.in_features = len(index)
