"""The repository contract's helpers, and the layout the compressor writes read back through them."""

from __future__ import annotations

from pathlib import Path

from compressor.repository import parse_config_text
from tests.fixtures.tinyrepo import build_tiny_repository
from varigate.contract.card import read_card
from varigate.contract.keys import PARAM_LOGICAL_MODEL, PARAM_VARIANT
from varigate.contract.layout import CARD_FILENAME, CONFIG_FILENAME, model_file, model_name
from varigate.contract.variants import REFERENCE_VARIANT, VARIANTS, variant_rank


def test_names_and_ranks() -> None:
    assert model_name("minilm", "int8") == "minilm.int8"
    assert model_file(Path("r") / "m.fp32") == Path("r/m.fp32/1/model.onnx")
    assert VARIANTS[0] == REFERENCE_VARIANT == "fp32"
    assert sorted(["int8", "zzz", "fp16", "fp32"], key=variant_rank) == ["fp32", "fp16", "int8", "zzz"]


def test_a_written_repository_follows_the_layout(tmp_path: Path) -> None:
    repo = build_tiny_repository(tmp_path / "repo")
    with_cards = sorted(p for p in repo.iterdir() if (p / CARD_FILENAME).is_file())
    assert with_cards, sorted(p.name for p in repo.iterdir())
    for model_dir in with_cards:
        card = read_card(model_dir)
        assert model_dir.name == card.model_name == model_name(card.logical_model, card.variant)
        assert model_file(model_dir).is_file()
        config = parse_config_text((model_dir / CONFIG_FILENAME).read_text())
        assert config.parameters[PARAM_LOGICAL_MODEL].string_value == card.logical_model
        assert config.parameters[PARAM_VARIANT].string_value == card.variant
