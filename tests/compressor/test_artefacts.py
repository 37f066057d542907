"""The artefact cache (``compressor.artefacts``) with the real digits source: a warm cache stands in for
every pass (proved by ladders that fail if run), byte for byte; a corrupt entry is rebuilt; a changed setting
misses; an up-to-date upstream of a variant being rebuilt comes from the cache, not from a second
distillation. Each test has a cache of its own (tests/conftest.py sets ``VARIGATE_CACHE_DIR``)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compressor import cli, pipeline, recipes
from compressor.artefacts import ENTRY, MODEL, ArtefactCache, cache_root
from compressor.config import BuildConfig
from compressor.evaluate import Score
from compressor.gate import Gated
from compressor.passes.base import PassResult
from compressor.recipes import Inputs
from compressor.source import Source
from varigate.contract.card import read_card
from varigate.contract.layout import model_file
from varigate.contract.variants import VARIANTS

CACHED = ": from the artefact cache"


@pytest.fixture(scope="module")
def digits() -> Source:
    from compressor.sources.digits import build_digits_source

    return build_digits_source()


def config(**update: Any) -> BuildConfig:
    return BuildConfig.model_validate({**json.loads(json.dumps(cli.FAST)), **update})


def build(source: Source, repo: Path, cfg: BuildConfig) -> tuple[dict[str, str], list[str]]:
    """Statuses by variant, and the pipeline's log lines."""
    lines: list[str] = []
    results = pipeline.build(source, repo, cfg, lines.append)
    return {r.variant: r.status for r in results}, lines


def from_cache(lines: list[str]) -> set[str]:
    return {line.split(":")[0].removeprefix("digits.") for line in lines if CACHED in line}


def no_passes(monkeypatch: pytest.MonkeyPatch, variants: tuple[str, ...] = VARIANTS) -> None:
    """Replace these variants' ladders by one that fails the build if the pipeline ever runs it."""

    def ladder(inputs: Inputs) -> Iterator[PassResult]:
        raise AssertionError(f"a pass ran for {inputs.work} although its artefact was cached")

    for v in variants:
        monkeypatch.setitem(recipes.BY_VARIANT, v, dataclasses.replace(recipes.recipe(v), ladder=ladder))


def card_without_measurements(model_dir: Path) -> dict[str, Any]:
    """The card less what is measured again on every build (the latency profile, its conditions, the
    speed note that quotes it)."""
    card = json.loads((model_dir / "varigate_card.json").read_text())
    for key in ("profile", "profile_conditions"):
        card.pop(key)
    card["notes"] = [n for n in card["notes"] if "on this CPU" not in n]
    return dict(card)


def test_a_warm_cache_builds_identical_files_without_running_a_pass(
    digits: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    statuses, lines = build(digits, tmp_path / "first", config())
    assert set(statuses.values()) == {"built"} and not from_cache(lines)
    entries = sorted(p.name for p in (cache_root() / "artefacts").iterdir())
    assert entries == sorted(read_card(tmp_path / "first" / f"digits.{v}").build_key for v in VARIANTS)
    no_passes(monkeypatch)
    statuses, lines = build(digits, tmp_path / "second", config())
    assert set(statuses.values()) == {"built"}
    assert from_cache(lines) == set(VARIANTS)
    for v in VARIANTS:
        a, b = tmp_path / "first" / f"digits.{v}", tmp_path / "second" / f"digits.{v}"
        assert model_file(b).read_bytes() == model_file(a).read_bytes(), v
        assert (b / "config.pbtxt").read_bytes() == (a / "config.pbtxt").read_bytes(), v
        assert card_without_measurements(b) == card_without_measurements(a), v


def test_a_rebuilt_variant_takes_its_up_to_date_upstream_from_the_cache(
    digits: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case the cache is for: pruned-structured-int8 must be rebuilt (its gate changed), its upstream
    pruned-structured is up to date in the repository; the distillation does not run again."""
    repo = tmp_path / "repo"
    wanted = ["pruned-structured", "pruned-structured-int8"]
    build(digits, repo, config(variants=wanted))
    before = model_file(repo / "digits.pruned-structured").read_bytes()
    no_passes(monkeypatch, ("fp32", "pruned-structured"))
    regated = config(variants=wanted, gate={"max_relative_loss": {"pruned-structured-int8": 0.05}})
    statuses, lines = build(digits, repo, regated)
    assert statuses == {
        "fp32": "up-to-date",
        "pruned-structured": "up-to-date",
        "pruned-structured-int8": "built",
    }
    assert from_cache(lines) == {"fp32", "pruned-structured"}
    assert read_card(repo / "digits.pruned-structured-int8").gate.max_relative_loss == 0.05
    assert model_file(repo / "digits.pruned-structured").read_bytes() == before


@pytest.mark.parametrize("damage", ["model-bytes", "entry-json", "model-missing"])
def test_a_corrupt_entry_is_removed_and_rebuilt(digits: Source, tmp_path: Path, damage: str) -> None:
    build(digits, tmp_path / "first", config(variants=["int8"]))
    key = read_card(tmp_path / "first" / "digits.int8").build_key
    entry = cache_root() / "artefacts" / key
    if damage == "model-bytes":
        data = bytearray((entry / MODEL).read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size, one byte changed: only the hash can tell
        (entry / MODEL).write_bytes(bytes(data))
    elif damage == "entry-json":
        (entry / ENTRY).write_text((entry / ENTRY).read_text()[:40])
    else:
        (entry / MODEL).unlink()
    statuses, lines = build(digits, tmp_path / "second", config(variants=["int8"]))
    assert statuses == {"fp32": "built", "int8": "built"}
    assert from_cache(lines) == {"fp32"}
    assert any(f"entry {key} is unusable" in line for line in lines)
    first, second = tmp_path / "first" / "digits.int8", tmp_path / "second" / "digits.int8"
    assert model_file(second).read_bytes() == model_file(first).read_bytes()  # built again, deterministic
    # the rebuilt artefact replaced the damaged entry: a third build takes it, verified
    statuses, lines = build(digits, tmp_path / "third", config(variants=["int8"]))
    assert from_cache(lines) == {"fp32", "int8"}
    assert model_file(tmp_path / "third" / "digits.int8").read_bytes() == model_file(first).read_bytes()


def test_a_changed_setting_misses_the_cache(digits: Source, tmp_path: Path) -> None:
    build(digits, tmp_path / "first", config(variants=["pruned"]))
    statuses, lines = build(
        digits, tmp_path / "second", config(variants=["pruned"], prune={"amounts": [0.2]})
    )
    assert statuses == {"fp32": "built", "pruned": "built"}
    assert from_cache(lines) == {"fp32"}  # the reference's key did not change; pruned's did
    first, second = (
        read_card(tmp_path / "first" / "digits.pruned"),
        read_card(tmp_path / "second" / "digits.pruned"),
    )
    assert (
        second.build_key != first.build_key and second.settings["amount"] == 0.2 != first.settings["amount"]
    )
    assert (cache_root() / "artefacts" / second.build_key / ENTRY).is_file()
    assert (cache_root() / "artefacts" / first.build_key / ENTRY).is_file()  # both kept


def test_a_cache_that_cannot_be_written_does_not_stop_the_build(
    digits: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("VARIGATE_CACHE_DIR", str(blocker))
    statuses, lines = build(digits, tmp_path / "repo", config(variants=["int8"]))
    assert statuses == {"fp32": "built", "int8": "built"}
    assert sum("artefact cache: cannot store" in line for line in lines) == 2


def test_the_cache_can_be_turned_off(digits: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VARIGATE_CACHE_MAX_BYTES", "0")
    assert ArtefactCache.from_env() is None
    statuses, _ = build(digits, tmp_path / "repo", config(variants=["int8"]))
    assert statuses == {"fp32": "built", "int8": "built"}
    assert not cache_root().exists()


def _gated(tmp_path: Path, name: str, size: int) -> Gated:
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(os.urandom(size))
    return Gated(PassResult(path, {"pass": name}), Score("top1", 0.5, {"x": 1.0}), [{"passed": True}])


def test_eviction_removes_the_least_recently_used_beyond_the_bound(tmp_path: Path) -> None:
    cache = ArtefactCache(tmp_path / "cache", limit=2500, log=lambda _: None)
    cache.store("a", _gated(tmp_path, "a", 1000))
    cache.store("b", _gated(tmp_path, "b", 1000))
    os.utime(cache.dir / "a", (1_000, 1_000))  # a is older than b ...
    os.utime(cache.dir / "b", (2_000, 2_000))
    work = tmp_path / "work"
    work.mkdir()
    hit = cache.load("a", work)  # ... until it is used: now b is the least recently used
    assert hit is not None and hit.result.settings == {"pass": "a"} and hit.attempts == [{"passed": True}]
    assert hit.score == Score("top1", 0.5, {"x": 1.0})
    cache.store("c", _gated(tmp_path, "c", 1000))
    assert sorted(p.name for p in cache.dir.iterdir()) == ["a", "c"]
    assert cache.counters.evicted == 1 and cache.counters.stores == 3 and cache.counters.hits == 1
    cache.store("huge", _gated(tmp_path, "huge", 3000))  # over the bound on its own: not kept
    assert not (cache.dir / "huge").exists()


def test_what_a_dead_writer_left_is_removed_and_never_read(tmp_path: Path) -> None:
    cache = ArtefactCache(tmp_path / "cache", log=lambda _: None)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    left = cache.dir / f".incoming-{int(dead.stdout)}-x"
    left.mkdir(parents=True)
    (left / MODEL).write_bytes(b"half a model")
    assert cache.load("incoming", tmp_path) is None
    cache.store("k", _gated(tmp_path, "k", 10))
    assert sorted(p.name for p in cache.dir.iterdir()) == ["k"]
    assert json.loads((cache.dir / "k" / ENTRY).read_text())["size_bytes"] == 10
