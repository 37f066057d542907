"""The structured transformer pass on a tiny, randomly initialised BERT (real torch, real tokenizer).

The MiniLM end-to-end build (tests/compressor/test_minilm.py) checks the exported variant; this checks the
pass's own contract quickly: physical shapes, global allocation, an untouched teacher, determinism."""

from __future__ import annotations

from typing import Any, Literal

import pytest
import torch
from torch import nn

from compressor.passes import structured_transformer as st
from compressor.passes.bert_shape import embedder
from compressor.passes.bert_shape import layers as bert_layers
from compressor.sources.minilm import MiniLMEmbedder, load_embedder

HEADS, HEAD_DIM, FFN, LAYERS = 4, 8, 64, 3


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return load_embedder()[1]


def tiny_embedder(vocab: int) -> MiniLMEmbedder:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    # PretrainedConfig takes attn_implementation through **kwargs, which BertConfig's typed signature omits
    untyped: dict[str, Any] = {"attn_implementation": "eager"}
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=HEADS * HEAD_DIM,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        max_position_embeddings=64,
        **untyped,
    )
    return MiniLMEmbedder(BertModel(config, add_pooling_layer=False)).eval()


TEXTS = [
    f"Sentence number {i} says something about {w} and more."
    for i, w in enumerate(["cats", "dogs", "code"] * 8)
]


def run(
    tokenizer: Any, **settings: Any
) -> tuple[nn.Module, dict[str, torch.Tensor], nn.Module, dict[str, Any]]:
    teacher = tiny_embedder(tokenizer.vocab_size)
    config = st.StructuredTransformerConfig(
        **{
            "distil_steps": 3,
            "batch_size": 4,
            "importance_batches": 2,
            "max_seq_len": 16,
            "bf16": False,
            **settings,
        }
    )
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student, info = st.apply(teacher, tokenizer, TEXTS, config)
    return teacher, before, student, info


def test_student_is_physically_smaller_and_teacher_untouched(tokenizer: Any) -> None:
    teacher, before, student, info = run(
        tokenizer, keep_heads_per_layer=2, keep_ffn_per_layer=16, allocation="per_layer"
    )
    for layer in bert_layers(student):
        attn = layer.attention.self
        assert attn.num_attention_heads == 2 and attn.query.weight.shape == (2 * HEAD_DIM, HEADS * HEAD_DIM)
        assert layer.attention.output.dense.weight.shape == (HEADS * HEAD_DIM, 2 * HEAD_DIM)
        assert layer.intermediate.dense.weight.shape == (16, HEADS * HEAD_DIM)
        assert layer.output.dense.weight.shape == (HEADS * HEAD_DIM, 16)
    assert info["params_after"] < info["params_before"] and info["distil_steps"] == 3
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    enc = tokenizer(TEXTS[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = student(enc["input_ids"], enc["attention_mask"])
    assert out.shape == (3, HEADS * HEAD_DIM)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)


def test_global_allocation_keeps_the_total_and_the_minimum(tokenizer: Any) -> None:
    _, _, student, info = run(
        tokenizer, keep_heads_per_layer=2, keep_ffn_per_layer=16, min_heads_per_layer=1, min_ffn_per_layer=4
    )
    assert sum(info["heads_per_layer"]) == 2 * LAYERS and min(info["heads_per_layer"]) >= 1
    assert sum(info["ffn_per_layer"]) == 16 * LAYERS and min(info["ffn_per_layer"]) >= 4
    layers = bert_layers(student)
    assert [la.attention.self.num_attention_heads for la in layers] == info["heads_per_layer"]
    assert [la.intermediate.dense.out_features for la in layers] == info["ffn_per_layer"]


def scaled_heads(vocab: int, layer_scale: tuple[float, ...]) -> MiniLMEmbedder:
    """The tiny embedder with head ``h`` of layer ``i`` scaled by ``layer_scale[i] * (h + 1)``: its
    magnitude score rises with ``h`` inside a layer and with the layer's scale across layers."""
    model = tiny_embedder(vocab)
    with torch.no_grad():
        for la, scale in zip(bert_layers(model), layer_scale, strict=True):
            attn = la.attention.self
            for h in range(HEADS):
                rows = slice(h * HEAD_DIM, (h + 1) * HEAD_DIM)
                for lin in (attn.query, attn.key, attn.value):
                    lin.weight[rows, :] *= scale * (h + 1)
                la.attention.output.dense.weight[:, rows] *= scale * (h + 1)
    return model


@pytest.mark.parametrize(
    ("allocation", "kept"),
    [
        ("global", [[0, 1, 2, 3], [3], [3]]),  # 6 heads in all, the most important wherever they are
        ("per_layer", [[2, 3], [2, 3], [2, 3]]),  # the top 2 of each layer
    ],
)
def test_allocation_ranks_heads_across_layers(
    tokenizer: Any, allocation: Literal["global", "per_layer"], kept: list[list[int]]
) -> None:
    teacher = scaled_heads(tokenizer.vocab_size, (10.0, 1.0, 0.1))
    config = st.StructuredTransformerConfig(
        keep_heads_per_layer=2,
        keep_ffn_per_layer=FFN,
        min_heads_per_layer=1,
        min_ffn_per_layer=4,
        allocation=allocation,
        importance="magnitude",
        distil_steps=0,
        batch_size=4,
        max_seq_len=16,
        bf16=False,
    )
    student, info = st.apply(teacher, tokenizer, TEXTS, config)
    assert info["kept_heads"] == kept and info["heads_per_layer"] == [len(k) for k in kept]
    layers = bert_layers(student)
    assert [la.attention.self.num_attention_heads for la in layers] == info["heads_per_layer"]


def test_same_seed_same_student(tokenizer: Any) -> None:
    _, _, a, _ = run(tokenizer, keep_heads_per_layer=2, keep_ffn_per_layer=16)
    _, _, b, _ = run(tokenizer, keep_heads_per_layer=2, keep_ffn_per_layer=16)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_bad_keep_counts_are_refused(tokenizer: Any) -> None:
    with pytest.raises(ValueError, match=r"keep heads per layer must be in 1\.\.4"):
        run(tokenizer, keep_heads_per_layer=5)
    with pytest.raises(ValueError, match="lists 2 values for 3 layers"):
        run(tokenizer, keep_heads_per_layer=2, keep_ffn_per_layer=[8, 8])


def test_dropped_layers_leave_the_student_and_are_matched_to_their_teacher_layers(tokenizer: Any) -> None:
    teacher, _, student, info = run(tokenizer, keep_layers=[0, 2], keep_heads_per_layer=2, distil_steps=0)
    assert info["kept_layers"] == [0, 2] and len(bert_layers(student)) == 2
    assert len(bert_layers(teacher)) == LAYERS
    assert len(info["heads_per_layer"]) == 2
    ids = torch.tensor([[101, 2000, 2001, 102]])
    hidden = embedder(student).hidden_states(ids, torch.ones_like(ids), all_layers=True)
    assert len(hidden) == 3  # embeddings + 2 layers: the dropped layer really is gone
    with pytest.raises(ValueError, match=r"increasing indices in 0\.\.2"):
        run(tokenizer, keep_layers=[2, 0])


MORE = [f"Another {w} sentence, number {i}, for the second set." for i, w in enumerate(["a", "b"] * 20)]


def test_named_sets_are_mixed_validated_and_drawn_as_a_learning_curve(tokenizer: Any) -> None:
    teacher = tiny_embedder(tokenizer.vocab_size)
    config = st.StructuredTransformerConfig(
        keep_layers=[0, 2],
        distil_steps=6,
        eval_every=2,
        validation_size=8,
        batch_size=4,
        importance_batches=1,
        max_seq_len=16,
        bf16=False,
        patience=0,
        min_delta=0.0,
    )
    _, info = st.apply(teacher, tokenizer, {"docstrings": TEXTS, "english": MORE}, config)
    curve = info["learning_curve"]
    assert curve["step"] == [2, 4, 6] and len(curve["loss"]) == 3
    assert set(curve["validation"]) == {"docstrings", "english"}
    assert all(0.0 < c <= 1.0 for values in curve["validation"].values() for c in values)
    assert info["text_sets"] == {"docstrings": len(TEXTS), "english": len(MORE)}
    best = max(range(3), key=lambda i: min(v[i] for v in curve["validation"].values()))
    assert info["validation_cosine"] == {k: v[best] for k, v in curve["validation"].items()}


def test_training_stops_at_the_target_or_on_a_plateau(tokenizer: Any) -> None:
    common = {"distil_steps": 20, "eval_every": 2, "validation_size": 8, "keep_layers": [0, 2]}
    _, _, _, reached = run(tokenizer, target_cosine=0.01, **common)
    assert reached["stopped"] == "target" and reached["distil_steps"] == 2
    _, _, _, flat = run(tokenizer, patience=1, min_delta=1.0, **common)  # no gain can count
    assert flat["stopped"] == "plateau" and flat["distil_steps"] == 4
    _, _, _, full = run(tokenizer, patience=0, **common)
    assert full["stopped"] == "budget" and full["distil_steps"] == 20


def test_the_ladder_walks_the_given_fallbacks_then_ends(tokenizer: Any) -> None:
    from compressor.passes.structured import NoMoreRungs

    base = st.StructuredTransformerConfig(
        keep_layers=[0, 2], fallbacks=[{"keep_layers": None, "keep_heads_per_layer": 2}]
    )
    assert st.ladder(base, 0) == base
    assert st.ladder(base, 1).keep_layers is None and st.ladder(base, 1).keep_heads_per_layer == 2
    routine = st.make_structured(tokenizer, TEXTS, {"distil_steps": 0, "batch_size": 4, "bf16": False})
    with pytest.raises(NoMoreRungs):
        routine(tiny_embedder(tokenizer.vocab_size), {}, 1)
