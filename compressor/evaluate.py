"""Evaluators: labelled top-1 for classifiers, fidelity to fp32 for embedders (and any other output)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from compressor import progress

Feeds = dict[str, np.ndarray]
PROGRESS_MIN_BATCHES = 8  # fewer batches than this pass too quickly to need a display


class Session(Protocol):
    """The part of ``onnxruntime.InferenceSession`` the compressor uses (onnxruntime ships no types)."""

    def run(self, output_names: list[str] | None, input_feed: Mapping[str, np.ndarray]) -> list[Any]: ...


def session(path: Path, threads: int = 2, spinning: bool = True) -> Session:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    sess: Session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess


def run_batches(path: Path, batches: Sequence[Feeds], threads: int = 2, what: str = "evaluate") -> np.ndarray:
    """First output of the model over every batch, concatenated along the batch axis.

    Over more than ``PROGRESS_MIN_BATCHES`` batches a progress task ``<what> <file stem>`` shows it."""
    sess = session(path, threads)
    outs: list[np.ndarray] = []
    name, quiet = f"{what} {path.stem}", len(batches) <= PROGRESS_MIN_BATCHES
    shown = (
        progress.Task(name, len(batches), "batch", display="off")
        if quiet
        else progress.task(name, len(batches), "batch")
    )
    with shown:
        for feeds in batches:
            outs.append(np.asarray(sess.run(None, feeds)[0], dtype=np.float32))
            shown.update()
    return np.concatenate(outs, axis=0)


@dataclass(frozen=True)
class Score:
    metric: str
    value: float
    extra: dict[str, float] = field(default_factory=dict)


def top1(logits: np.ndarray, labels: np.ndarray) -> Score:
    if len(logits) != len(labels):
        raise ValueError(f"{len(logits)} predictions for {len(labels)} labels")
    return Score("top1", float(np.mean(np.argmax(logits, axis=1) == labels)))


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.reshape(len(x), -1).astype(np.float64)
    unit: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return unit


def fidelity(outputs: np.ndarray, reference: np.ndarray) -> Score:
    """Mean cosine similarity to the fp32 outputs (and its minimum, 1st and 5th percentiles), and top-1
    nearest-neighbour agreement: for each item, is its nearest other item the same under the variant's
    embeddings as under fp32's?"""
    if outputs.shape != reference.shape:
        raise ValueError(f"output shape {outputs.shape} differs from reference {reference.shape}")
    a, b = _unit(outputs), _unit(reference)
    cos = np.sum(a * b, axis=1)
    sa, sb = a @ a.T, b @ b.T
    np.fill_diagonal(sa, -np.inf)
    np.fill_diagonal(sb, -np.inf)
    nn_agree = float(np.mean(np.argmax(sa, axis=1) == np.argmax(sb, axis=1)))
    return Score(
        "mean_cosine",
        float(np.mean(cos)),
        {
            "min_cosine": float(np.min(cos)),
            "p01_cosine": float(np.quantile(cos, 0.01)),
            "p05_cosine": float(np.quantile(cos, 0.05)),
            "nn_top1_agreement": nn_agree,
        },
    )


def relative_loss(value: float, reference: float) -> float:
    return (reference - value) / reference if reference else 0.0


def batch_dependence(path: Path, batches: Sequence[Feeds], rows: int = 16) -> dict[str, float | str]:
    """How much a row's output changes when it is run inside a batch rather than alone.

    onnxruntime's dynamic int8 computes activation scales over the whole batch, so such variants are not
    batch-independent; this measures the worst cosine between 'alone' and 'in a batch of the others'."""
    sess = session(path)
    feeds = batches[0]
    n = min(rows, len(next(iter(feeds.values()))))
    together = np.asarray(sess.run(None, {k: v[:n] for k, v in feeds.items()})[0])
    alone = []
    for i in range(n):
        one = {k: v[i : i + 1] for k, v in feeds.items()}
        if "attention_mask" in one:  # alone means unpadded
            length = int(one["attention_mask"].sum())
            one = {k: v[:, :length] for k, v in one.items()}
        alone.append(np.asarray(sess.run(None, one)[0])[0])
    cos = np.sum(_unit(together) * _unit(np.stack(alone)), axis=1)
    return {
        "rows": n,
        "min_cosine_alone_vs_batched": float(cos.min()),
        "mean_cosine_alone_vs_batched": float(cos.mean()),
    }
