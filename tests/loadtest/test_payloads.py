"""Payloads from real data: sentences tokenised for MiniLM, scikit-learn's digits, or shaped from metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from loadtest import payloads


def test_sentences_have_special_tokens_and_natural_lengths() -> None:
    p = payloads.sentences(32)
    lengths = set()
    for req in p.requests:
        ids, mask = req["input_ids"], req["attention_mask"]
        assert ids.dtype == np.int64 and ids.shape == mask.shape and ids.shape[0] == 1
        assert ids[0, 0] == 101 and ids[0, -1] == 102  # [CLS] ... [SEP]
        assert mask.all()
        lengths.add(ids.shape[1])
    assert len(lengths) > 5  # real sentences, not one padded shape


def test_sentences_packed_to_a_sequence_length_are_all_real_tokens() -> None:
    p = payloads.sentences(8, seq_len=64, batch=2)
    for req in p.requests:
        assert req["input_ids"].shape == (2, 64) and req["attention_mask"].all()
        assert np.all(req["input_ids"][:, 1:-1] > 102)  # word pieces, no padding or specials inside
    assert p.rows(3) == 2


def test_batched_sentences_are_padded_to_the_longest() -> None:
    req = payloads.sentences(1, batch=4).requests[0]
    ids, mask = req["input_ids"], req["attention_mask"]
    assert ids.shape[0] == 4
    assert np.all(ids[mask == 0] == 0)
    assert mask.sum(axis=1).max() == ids.shape[1]


def test_the_shipped_pre_tokenised_ids_match_the_tokenizer() -> None:
    payloads.token_ids.cache_clear()
    ids, cls, sep, source = payloads.token_ids()
    assert "tokenizer" in source and (cls, sep) == (101, 102)
    shipped = json.loads((payloads.DATA / "sentences.minilm.json").read_text())
    assert [list(row) for row in ids] == shipped["ids"]


def test_digits_are_real_images_in_unit_range() -> None:
    p = payloads.digits(10, batch=3)
    img = p.requests[0]["image"]
    assert img.shape == (3, 1, 8, 8) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0 and img.std() > 0.1


def test_auto_picks_by_the_model_inputs() -> None:
    text = payloads.for_model([("input_ids", "INT64", [-1]), ("attention_mask", "INT64", [-1])], count=2)
    assert "sentences" in text.description
    other = payloads.for_model([("x", "FP32", [4]), ("flag", "BOOL", [2])], count=3, batch=2)
    assert other.requests[0]["x"].shape == (2, 4) and other.requests[0]["flag"].dtype == np.bool_
    assert {payloads.Payloads.datatype(a) for r in other.requests for a in r.values()} == {"FP32", "BOOL"}


def test_npz_rows_become_requests(tmp_path: Path) -> None:
    f = tmp_path / "rows.npz"
    np.savez(f, x=np.arange(40, dtype=np.float32).reshape(10, 4))
    p = payloads.npz(f, batch=3)
    assert len(p) == 3 and p.requests[1]["x"][0, 0] == 12.0
    np.savez(f, x=np.zeros((3, 4)), y=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="same number of rows"):
        payloads.npz(f)
