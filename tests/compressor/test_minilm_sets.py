"""The MiniLM source's held-out sets: docstrings (primary) and general English, both in its fingerprint."""

from __future__ import annotations

import pytest

from compressor.english import load_english
from compressor.source import Source
from compressor.sources.minilm import EVAL_BATCH_SIZE, build_minilm_source

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small() -> Source:
    return build_minilm_source(max_train=2000, max_heldout=64)


def test_english_is_a_second_held_out_set_of_fortune_quotes(small: Source) -> None:
    assert small.eval_set == "docstrings" and list(small.extra_eval) == ["english"]
    batches = small.extra_eval["english"]
    assert sum(len(b["input_ids"]) for b in batches) == 64 and len(batches[0]["input_ids"]) == EVAL_BATCH_SIZE
    from transformers import AutoTokenizer

    from compressor.sources.minilm import model_path

    tokenizer = AutoTokenizer.from_pretrained(str(model_path()), local_files_only=True)
    first = str(tokenizer.decode(batches[0]["input_ids"][0], skip_special_tokens=True))
    _, heldout = load_english(max_heldout=64)
    # the uncased tokenizer's view of the first English sentence (its decode spaces punctuation)
    assert first.replace(" ", "") == heldout[0].lower().replace(" ", "")
    assert any("english" in note and "fortunes-min" in note for note in small.notes)


def test_the_fingerprint_follows_the_english_sets(small: Source) -> None:
    fewer = build_minilm_source(max_train=2000, max_heldout=64, english_heldout=32)
    assert len(fewer.extra_eval["english"]) == 1
    assert fewer.fingerprint != small.fingerprint
    assert build_minilm_source(max_train=2000, max_heldout=64).fingerprint == small.fingerprint
