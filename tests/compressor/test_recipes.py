"""The recipes and the pipeline that iterates them: one recipe per contract variant, build keys that chain
from upstream to downstream, and a pipeline that hands each ladder its upstream from its own work directory,
never from the repository it is writing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from compressor import cli, pipeline
from compressor.config import BuildConfig
from compressor.recipes import RECIPES, recipe
from compressor.source import Source
from compressor.sources.custom import from_onnx
from tests.fixtures.tinyrepo import VOCAB_SIZE, embedder_model
from varigate.contract.card import read_card
from varigate.contract.layout import model_file
from varigate.contract.variants import REFERENCE_VARIANT, VARIANTS


def _quiet(_line: str) -> None:
    pass


def test_one_recipe_per_contract_variant_each_after_its_upstream() -> None:
    assert tuple(r.variant for r in RECIPES) == VARIANTS
    built: list[str] = []
    for r in RECIPES:
        assert r.upstream is None or r.upstream in built, r.variant
        assert (r.upstream is None) == (r.variant == REFERENCE_VARIANT) == (r.max_loss is None)
        assert r.max_loss is None or 0.0 < r.max_loss < 1.0
        built.append(r.variant)
    with pytest.raises(ValueError, match="no recipe for variant 'fp64'"):
        recipe("fp64")


def test_a_gate_override_replaces_only_that_variants_default() -> None:
    config = BuildConfig.model_validate({"gate": {"max_relative_loss": {"int8": 0.05}}})
    assert recipe("int8").gate(config) == 0.05
    assert recipe("fp16").gate(config) == recipe("fp16").max_loss == 0.01
    assert recipe(REFERENCE_VARIANT).gate(config) is None


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    """An ONNX-only source: the tiny fp32 embedder and seeded token inputs."""
    tmp = tmp_path_factory.mktemp("recipes")
    onnx.save(embedder_model("fp32"), tmp / "tiny.onnx")
    ids = np.random.default_rng(0).integers(1, VOCAB_SIZE, size=(16, 6)).astype(np.int64)
    np.savez(tmp / "inputs.npz", input_ids=ids, attention_mask=np.ones_like(ids))
    return from_onnx("tiny", tmp / "tiny.onnx", tmp / "inputs.npz")


def _config(**update: object) -> BuildConfig:
    return BuildConfig.model_validate({**json.loads(json.dumps(cli.FAST)), "variants": ["int8"], **update})


def _statuses(results: list[pipeline.VariantResult]) -> dict[str, str]:
    return {r.variant: r.status for r in results}


def test_keys_chain_and_the_upstream_comes_from_the_work_directory(source: Source, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    first = pipeline.build(source, repo, _config(), _quiet)
    assert _statuses(first) == {REFERENCE_VARIANT: "built", "int8": "built"}
    fp32_key = read_card(repo / "tiny.fp32").build_key
    int8_key = read_card(repo / "tiny.int8").build_key
    # The repository's fp32 model is spoiled behind a valid card: it stays "up to date", and a rebuilt
    # int8 must come from an fp32 the pipeline builds itself, not from the file in the repository.
    model_file(repo / "tiny.fp32").write_bytes(b"not an onnx model")
    changed = _config(int8_dynamic={"per_channel": False})
    second = pipeline.build(source, repo, changed, _quiet)
    assert _statuses(second) == {REFERENCE_VARIANT: "up-to-date", "int8": "built"}
    assert read_card(repo / "tiny.fp32").build_key == fp32_key
    assert read_card(repo / "tiny.int8").build_key != int8_key
    assert model_file(repo / "tiny.fp32").read_bytes() == b"not an onnx model"  # left alone
    clean = tmp_path / "clean"
    assert _statuses(pipeline.build(source, clean, changed, _quiet))["int8"] == "built"
    assert model_file(repo / "tiny.int8").read_bytes() == model_file(clean / "tiny.int8").read_bytes()
    assert read_card(clean / "tiny.int8").build_key == read_card(repo / "tiny.int8").build_key
    # a different reference gate changes the reference's key and, through the chain, int8's
    regated = pipeline.build(source, clean, _config(gate={"max_relative_loss": {"fp32": 0.5}}), _quiet)
    assert _statuses(regated) == {REFERENCE_VARIANT: "built", "int8": "built"}
    assert read_card(clean / "tiny.fp32").build_key != fp32_key
    assert read_card(clean / "tiny.int8").build_key not in (int8_key, read_card(repo / "tiny.int8").build_key)


def test_a_variant_whose_upstream_cannot_be_built_is_skipped_with_a_reason(
    source: Source, tmp_path: Path
) -> None:
    results = pipeline.build(source, tmp_path / "repo", _config(variants=["pruned-structured-int8"]), _quiet)
    by_variant = {r.variant: r for r in results}
    assert by_variant[REFERENCE_VARIANT].status == "built"
    skipped = by_variant["pruned-structured-int8"]
    assert skipped.status == "skipped" and "needs the pruned-structured variant" in skipped.reason
    assert not (tmp_path / "repo" / "tiny.pruned-structured-int8").exists()
    assert not (tmp_path / "repo" / "tiny.pruned-structured").exists()
