"""The digits CNN: a small image classifier trained at build time on scikit-learn's bundled digits set.

``sklearn.datasets.load_digits`` ships 1797 8x8 grey-level images (0-16) with the package, so nothing is
downloaded. Images are scaled to [0, 1] and split stratified into train (60 %), calibration (15 %) and a
held-out labelled test set (25 %); the three are disjoint. Training is seeded and deterministic on CPU and
takes a second or two. The CNN is wide enough (32 and 64 conv channels) that channel pruning pays off in
latency; its structured variant comes from ``compressor.passes.structured_cnn``, distilled on the train
images without their labels.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F

from compressor.passes.structured_cnn import StructuredCnnConfig, make_structured, seeded_torch
from compressor.repository import ServingSpec, TensorSpec
from compressor.source import Feeds, Source

LOGICAL_MODEL = "digits"
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
IMAGE_DIMS = (1, 8, 8)
NUM_CLASSES = 10
EVAL_BATCH_SIZE = 64


class DigitsTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="Seed of the data split, weight init and shuffling.")
    epochs: int = Field(20, ge=1, description="Supervised training epochs over the train split.")
    lr: float = Field(3e-3, gt=0.0, description="Peak Adam learning rate (one-cycle schedule).")
    batch_size: int = Field(64, ge=1, description="Training mini-batch size.")
    test_fraction: float = Field(
        0.25, gt=0.0, lt=1.0, description="Share of all images held out for evaluation."
    )
    calib_fraction: float = Field(
        0.15, gt=0.0, lt=1.0, description="Share of all images kept for int8 calibration."
    )
    threads: int = Field(
        1, ge=1, description="torch intra-op threads while training (1 is fastest for this size)."
    )


@dataclass(frozen=True, slots=True)
class DigitsSplits:
    train_x: np.ndarray  # (N, 1, 8, 8) float32 in [0, 1]
    train_y: np.ndarray  # (N,) int64
    calib_x: np.ndarray
    calib_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def digits_cnn() -> nn.Sequential:
    """conv(1->32) - ReLU - conv(32->64) - ReLU - maxpool 2 - flatten - linear(1024->128) - ReLU -
    linear(128->10)."""
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 32, 3, padding=1),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(32, 64, 3, padding=1),
            relu2=nn.ReLU(),
            pool=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            fc1=nn.Linear(64 * 4 * 4, 128),
            relu3=nn.ReLU(),
            fc2=nn.Linear(128, NUM_CLASSES),
        )
    )


def load_splits(config: DigitsTrainConfig) -> DigitsSplits:
    """Stratified, seeded train / calibration / test split of the bundled digits images."""
    if config.test_fraction + config.calib_fraction >= 0.9:
        raise ValueError(
            f"test_fraction {config.test_fraction} + calib_fraction {config.calib_fraction} leave too little "
            "to train on"
        )
    images, labels = _dataset()
    idx = np.arange(len(labels))
    rest, test = train_test_split(
        idx, test_size=config.test_fraction, stratify=labels, random_state=config.seed
    )
    calib_share = config.calib_fraction / (1.0 - config.test_fraction)
    train, calib = train_test_split(
        rest, test_size=calib_share, stratify=labels[rest], random_state=config.seed
    )
    return DigitsSplits(
        train_x=images[train], train_y=labels[train],
        calib_x=images[calib], calib_y=labels[calib],
        test_x=images[test], test_y=labels[test],
    )  # fmt: skip


def train_teacher(splits: DigitsSplits, config: DigitsTrainConfig) -> nn.Sequential:
    """The fp32 teacher, trained with cross-entropy on the train split only; returned in eval mode."""
    with seeded_torch(config.seed, config.threads):
        model = digits_cnn()
        x = torch.from_numpy(splits.train_x)
        y = torch.from_numpy(splits.train_y)
        gen = torch.Generator().manual_seed(config.seed)
        steps = config.epochs * -(-len(x) // config.batch_size)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps)
        model.train()
        for _ in range(config.epochs):
            perm = torch.randperm(len(x), generator=gen)
            for start in range(0, len(x), config.batch_size):
                batch = perm[start : start + config.batch_size]
                loss = F.cross_entropy(model(x[batch]), y[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
    return model.eval()


def top1(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of a torch classifier on ``images``."""
    with torch.no_grad():
        pred = model.eval()(torch.from_numpy(images)).argmax(dim=1).numpy()
    return float((pred == labels).mean())


def build_digits_source(
    seed: int = 0, epochs: int = 20, structured_settings: dict[str, Any] | None = None
) -> Source:
    """Train the digits CNN and describe it for the pipeline (fp32 teacher, data splits, serving spec)."""
    config = DigitsTrainConfig.model_validate({"seed": seed, "epochs": epochs})
    structured_defaults = {"seed": seed, **(structured_settings or {})}
    StructuredCnnConfig.model_validate(structured_defaults)  # a bad key fails here, not mid-pipeline
    splits = load_splits(config)
    teacher = train_teacher(splits, config)
    test_x, test_y = splits.test_x, splits.test_y

    def profile_feeds(batch_size: int) -> Feeds:
        if batch_size < 1:
            raise ValueError(f"profile batch_size must be >= 1, got {batch_size}")
        return {INPUT_NAME: test_x[np.arange(batch_size) % len(test_x)]}

    serving = ServingSpec(
        inputs=(TensorSpec(INPUT_NAME, "float32", IMAGE_DIMS),),
        outputs=(TensorSpec(OUTPUT_NAME, "float32", (NUM_CLASSES,)),),
        max_batch_size=64,
        preferred_batch_sizes=(16, 32),
    )
    return Source(
        logical_model=LOGICAL_MODEL,
        task="classification",
        serving=serving,
        torch_module=teacher,
        example_inputs={INPUT_NAME: test_x[:2].copy()},
        eval_batches=_batches(test_x),
        eval_labels=test_y.copy(),
        calib_batches=_batches(splits.calib_x),
        profile_feeds=profile_feeds,
        profile_conditions={
            "image_dims": list(IMAGE_DIMS),
            "feeds": "held-out test images, tiled to the batch size",
        },
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        int8_mode="static",
        structured=make_structured(splits.train_x, structured_defaults),
        fingerprint=_fingerprint(config, structured_defaults),
        notes=[
            (
                f"sklearn digits: {len(splits.train_y)} train / {len(splits.calib_y)} calibration / "
                f"{len(test_y)} held-out test images (stratified, seed {seed}), scaled to [0, 1]"
            ),
            f"fp32 teacher top-1 on the held-out split: {top1(teacher, test_x, test_y):.4f}",
            "structured variant: L1 channel pruning + distillation on the train images without labels",
        ],
    )


def _dataset() -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    images = (np.asarray(digits.images, dtype=np.float32) / 16.0).reshape(-1, *IMAGE_DIMS)
    return np.ascontiguousarray(images), np.asarray(digits.target, dtype=np.int64)


def _batches(x: np.ndarray) -> list[Feeds]:
    return [{INPUT_NAME: x[i : i + EVAL_BATCH_SIZE].copy()} for i in range(0, len(x), EVAL_BATCH_SIZE)]


def _fingerprint(config: DigitsTrainConfig, structured_defaults: dict[str, Any]) -> str:
    images, labels = _dataset()
    h = hashlib.sha256()
    h.update(images.tobytes())
    h.update(labels.tobytes())
    settings = {
        "train": config.model_dump(),
        "structured_defaults": structured_defaults,
        "architecture": repr(digits_cnn()),
        "torch": torch.__version__,
    }
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()
