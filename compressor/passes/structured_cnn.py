"""Structured pruning of a sequential CNN's channels, then knowledge distillation from the fp32 teacher.

Pruning ranks each conv filter (and each hidden linear unit) by the L1 norm of its weights and rebuilds a
physically smaller network: fewer conv out-channels, the next conv's in-channels, any BatchNorm, and the
flatten -> linear in-features cut to match. Distillation then trains the student on the teacher's logits
(KL divergence at a temperature) over *unlabelled* images with small augmentations (±pixel shifts, noise).

Works on any ``torch.nn.Sequential`` built from Conv2d / BatchNorm / Linear, element-wise activations,
pools, Dropout and one Flatten. ``make_structured`` turns this into the ``Source.structured`` callable,
with its own fallback ladder (attempt 1+ = distil longer, then prune less).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F

from compressor import progress
from compressor.passes.cnn_cuts import (
    NORMS,
    PASS_THROUGH,
    count_params,
    cut_downstream,
    cut_out,
    input_shapes,
)
from compressor.passes.learning_curve import Curve, TeacherCosine

# The fallback ladder, per attempt: (epoch multiplier, share of base's cut still cut).
_LADDER = ((1.0, 1.0), (2.0, 1.0), (2.0, 0.75), (3.0, 0.5))
LADDER_LENGTH = len(_LADDER)

StructuredFn = Callable[[nn.Module, dict[str, Any], int], tuple[nn.Module, dict[str, Any]]]


class StructuredCnnConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conv_keep_ratio: float = Field(0.5, gt=0.0, le=1.0, description="Share of conv output channels kept.")
    linear_keep_ratio: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="Share of each hidden linear layer's units kept (the output layer is never cut).",
    )
    layer_keep_ratios: dict[str, float] = Field(
        default_factory=dict,
        description="Per-layer override of the keep ratio, by module name (e.g. {'conv1': 0.75}).",
    )
    min_channels: int = Field(4, ge=1, description="Fewest channels / units one layer keeps.")
    channel_multiple: int = Field(
        16,
        ge=1,
        description="Round kept counts to the nearest multiple of this: onnxruntime's NCHWc conv kernels "
        "block channels by 16 (AVX-512) or 8 (AVX2), and other counts fall back to slower kernels.",
    )
    epochs: int = Field(30, ge=0, description="Distillation epochs over the unlabelled images.")
    lr: float = Field(3e-3, gt=0.0, description="Peak Adam learning rate (one-cycle schedule).")
    batch_size: int = Field(64, ge=1, description="Distillation mini-batch size.")
    temperature: float = Field(4.0, gt=0.0, description="Softmax temperature of the KL distillation loss.")
    shift_pixels: int = Field(1, ge=0, description="Random shift of up to this many pixels per axis.")
    noise_std: float = Field(0.05, ge=0.0, description="Std of Gaussian noise on augmented images.")
    seed: int = Field(0, description="Seed for augmentation, shuffling and the torch RNG.")
    threads: int = Field(1, ge=1, description="torch threads while distilling (1 is fastest at this size).")


@contextlib.contextmanager
def seeded_torch(seed: int, threads: int = 1) -> Iterator[None]:
    """Seed torch, make it deterministic and pin its threads; restore the previous state afterwards."""
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev_det)
            torch.set_num_threads(prev_threads)


def prune(
    teacher: nn.Module, example: torch.Tensor, config: StructuredCnnConfig
) -> tuple[nn.Sequential, dict[str, Any]]:
    """A physically smaller copy of ``teacher`` keeping the filters / units with the largest L1 norms."""
    if not isinstance(teacher, nn.Sequential):
        raise TypeError(f"structured CNN pruning needs an nn.Sequential, got {type(teacher).__name__}")
    unknown = sorted(set(config.layer_keep_ratios) - {n for n, _ in teacher.named_children()})
    if unknown:
        raise ValueError(f"layer_keep_ratios names layers {unknown} not in the model")
    student = copy.deepcopy(teacher).eval()
    names = [n for n, _ in student.named_children()]
    layers = [m for _, m in student.named_children()]
    for name, layer in zip(names, layers, strict=True):
        if not isinstance(layer, (nn.Conv2d, nn.Linear, nn.Flatten, *NORMS, *PASS_THROUGH)):
            raise TypeError(f"cannot prune layer {name!r} of type {type(layer).__name__}")
        if isinstance(layer, nn.Conv2d) and layer.groups != 1:
            raise ValueError(f"cannot prune grouped conv {name!r} (groups={layer.groups})")
    shapes = input_shapes(student, example)
    weighted = [i for i, m in enumerate(layers) if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not weighted:
        raise ValueError("model has no Conv2d or Linear layer to prune")
    params_before = count_params(student)
    kept: dict[str, dict[str, int]] = {}
    for i in weighted[:-1]:  # the last weighted layer produces the model's output: never cut
        layer = layers[i]
        assert isinstance(layer, (nn.Conv2d, nn.Linear))
        default = config.conv_keep_ratio if isinstance(layer, nn.Conv2d) else config.linear_keep_ratio
        ratio = config.layer_keep_ratios.get(names[i], default)
        n_out = int(layer.weight.shape[0])
        k = _kept_count(n_out, ratio, config)
        if k == n_out:
            continue
        importance = layer.weight.detach().abs().reshape(n_out, -1).sum(dim=1)
        keep = torch.sort(torch.topk(importance, k).indices).values
        cut_out(layer, keep)
        cut_downstream(layers, names, shapes, i, keep)
        kept[names[i]] = {"before": n_out, "after": k}
    return student, {"kept": kept, "params_before": params_before, "params_after": count_params(student)}


def distil(
    teacher: nn.Module,
    student: nn.Module,
    unlabelled: np.ndarray,
    config: StructuredCnnConfig,
    curve: Curve | None = None,
    validation: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Train ``student`` in place to match ``teacher``'s softened logits on augmented unlabelled images.

    One learning-curve point per epoch goes into ``curve``: the epoch's mean loss and the mean cosine
    to the teacher's logits on each ``validation`` set (default: up to 256 training images, unaugmented)."""
    if len(unlabelled) == 0:
        raise ValueError("distillation data is empty: need unlabelled images of shape (N, C, H, W)")
    data = torch.from_numpy(np.ascontiguousarray(unlabelled, dtype=np.float32))
    teacher = teacher.eval()
    curve = curve if curve is not None else Curve()
    score = TeacherCosine(teacher, validation if validation is not None else {"train": unlabelled[:256]})
    gen = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = -(-len(data) // config.batch_size)
    opt = torch.optim.Adam(student.parameters(), lr=config.lr)
    total_steps = max(1, config.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total_steps)
    t = config.temperature
    losses: list[float] = []
    started = time.monotonic()
    student.train()
    with progress.task(f"distil cnn (attempt {curve.attempt})", config.epochs * steps_per_epoch) as shown:
        for _ in range(config.epochs):
            losses = []
            perm = torch.randperm(len(data), generator=gen)
            for start in range(0, len(data), config.batch_size):
                x = _augment(data[perm[start : start + config.batch_size]], config, gen)
                with torch.no_grad():
                    soft_targets = F.softmax(teacher(x) / t, dim=1)
                log_probs = F.log_softmax(student(x) / t, dim=1)
                loss = F.kl_div(log_probs, soft_targets, reduction="batchmean") * t * t
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
                curve.loss(losses[-1])
                shown.update(loss=losses[-1])
            curve.point(shown.done, score(student))
            shown.set(**curve.latest())
    student.eval()
    return {
        "epochs": config.epochs,
        "final_loss": float(np.mean(losses)) if losses else None,
        "distil_seconds": round(time.monotonic() - started, 3),
        "samples": len(data),
        "learning_curve": curve.as_settings(),
    }


def ladder(base: StructuredCnnConfig, attempt: int) -> StructuredCnnConfig:
    """Config for fallback ``attempt``.

    0 = ``base``; 1 = distil 2x longer; 2 = distil 2x and cut 3/4 of what ``base`` cuts (keep 0.5 -> 0.625);
    3 = distil 3x and cut half (keep 0.5 -> 0.75). Kept counts are then rounded to ``channel_multiple``.
    Later rungs are more accurate and less fast.
    """
    if not 0 <= attempt < LADDER_LENGTH:
        raise ValueError(f"structured fallback attempt {attempt} out of range 0..{LADDER_LENGTH - 1}")
    epoch_mult, cut_share = _LADDER[attempt]

    def soften(keep: float) -> float:
        return 1.0 - (1.0 - keep) * cut_share

    return base.model_copy(
        update={
            "epochs": round(base.epochs * epoch_mult),
            "conv_keep_ratio": soften(base.conv_keep_ratio),
            "linear_keep_ratio": soften(base.linear_keep_ratio),
            "layer_keep_ratios": {k: soften(v) for k, v in base.layer_keep_ratios.items()},
        }
    )


def prune_and_distil(
    teacher: nn.Module,
    unlabelled: np.ndarray,
    config: StructuredCnnConfig,
    attempt: int = 0,
    validation: Mapping[str, np.ndarray] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Prune a copy of ``teacher`` and distil it; the teacher is left untouched."""
    with seeded_torch(config.seed, config.threads):
        example = torch.from_numpy(np.ascontiguousarray(unlabelled[:2], dtype=np.float32))
        student, info = prune(teacher, example, config)
        info.update(distil(teacher, student, unlabelled, config, Curve(attempt), validation))
    info["settings"] = config.model_dump()
    return student, info


def make_structured(
    unlabelled: np.ndarray,
    defaults: dict[str, Any] | None = None,
    validation: Mapping[str, np.ndarray] | None = None,
) -> StructuredFn:
    """The ``Source.structured`` callable: settings override ``defaults``; ``attempt`` walks the ladder.

    ``validation`` names the image sets the learning curve scores (e.g. ``{"heldout": images}``); without
    it, the curve scores the first 256 distillation images, unaugmented, as ``train``."""
    base_defaults = dict(defaults or {})
    StructuredCnnConfig.model_validate(base_defaults)  # fail at source build time on a bad key

    def structured(
        teacher: nn.Module, settings: dict[str, Any], attempt: int
    ) -> tuple[nn.Module, dict[str, Any]]:
        base = StructuredCnnConfig.model_validate({**base_defaults, **(settings or {})})
        student, info = prune_and_distil(teacher, unlabelled, ladder(base, attempt), attempt, validation)
        info["attempt"] = attempt
        return student, info

    return structured


def _kept_count(n_out: int, ratio: float, config: StructuredCnnConfig) -> int:
    m = config.channel_multiple
    k = m * max(1, math.floor(n_out * ratio / m + 0.5))
    return min(n_out, max(config.min_channels, k))


def _augment(x: torch.Tensor, config: StructuredCnnConfig, gen: torch.Generator) -> torch.Tensor:
    """Random ±``shift_pixels`` translation (zero fill) per image, then Gaussian noise, clipped to [0, 1]."""
    s = config.shift_pixels
    if s > 0 and x.dim() == 4:
        n, c, h, w = x.shape
        padded = F.pad(x, (s, s, s, s))
        dy = torch.randint(0, 2 * s + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * s + 1, (n,), generator=gen)
        rows = (torch.arange(h)[None, :] + dy[:, None])[:, None, :, None]
        cols = (torch.arange(w)[None, :] + dx[:, None])[:, None, None, :]
        x = padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    if config.noise_std > 0:
        x = x + torch.randn(x.shape, generator=gen) * config.noise_std
    return x.clamp(0.0, 1.0)
