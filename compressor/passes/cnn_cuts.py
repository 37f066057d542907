"""The cuts of structured CNN pruning: which layers a channel cut passes through, and how a kept set of
output channels / units is followed forward (norms, flatten, the next Conv2d or Linear's inputs)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# Parameter-free layers that keep the channel axis where it is (pruning passes through them).
PASS_THROUGH = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Hardswish,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Dropout2d, nn.Identity,
)  # fmt: skip
NORMS = (nn.BatchNorm2d, nn.BatchNorm1d)


def input_shapes(model: nn.Sequential, example: torch.Tensor) -> list[tuple[int, ...]]:
    """Shape of the tensor entering each child, from one forward pass."""
    shapes: list[tuple[int, ...]] = []
    x = example
    with torch.no_grad():
        for layer in model.children():
            shapes.append(tuple(x.shape))
            x = layer(x)
    return shapes


def cut_out(layer: nn.Conv2d | nn.Linear, keep: torch.Tensor) -> None:
    layer.weight = nn.Parameter(layer.weight.detach()[keep].clone())
    if layer.bias is not None:
        layer.bias = nn.Parameter(layer.bias.detach()[keep].clone())
    if isinstance(layer, nn.Conv2d):
        layer.out_channels = len(keep)
    else:
        layer.out_features = len(keep)


def cut_downstream(
    layers: list[nn.Module], names: list[str], shapes: list[tuple[int, ...]], i: int, keep: torch.Tensor
) -> None:
    """Follow the cut channels forward to the next weighted layer, adjusting norms and in-features."""
    index = keep
    for j in range(i + 1, len(layers)):
        layer = layers[j]
        if isinstance(layer, NORMS):
            cut_norm(layer, index)
        elif isinstance(layer, nn.Flatten):
            spatial = int(np.prod(shapes[j][2:])) if len(shapes[j]) > 2 else 1
            index = (index[:, None] * spatial + torch.arange(spatial)[None, :]).reshape(-1)
        elif isinstance(layer, nn.Conv2d):
            layer.weight = nn.Parameter(layer.weight.detach()[:, index].clone())
            layer.in_channels = len(index)
            return
        elif isinstance(layer, nn.Linear):
            if layer.in_features != shapes[j][-1]:
                raise ValueError(f"layer {names[j]!r} expects {layer.in_features} inputs, sees {shapes[j]}")
            layer.weight = nn.Parameter(layer.weight.detach()[:, index].clone())
            layer.in_features = len(index)
            return
    raise ValueError(f"layer {names[i]!r} feeds no later Conv2d or Linear")


def cut_norm(norm: nn.BatchNorm1d | nn.BatchNorm2d, index: torch.Tensor) -> None:
    if norm.affine:
        norm.weight = nn.Parameter(norm.weight.detach()[index].clone())
        norm.bias = nn.Parameter(norm.bias.detach()[index].clone())
    if norm.running_mean is not None and norm.running_var is not None:
        norm.running_mean = norm.running_mean[index].clone()
        norm.running_var = norm.running_var[index].clone()
    norm.num_features = len(index)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
