"""The corpora's on-disk cache: hit when nothing changed, rebuilt when corrupt or when an input changed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from compressor import corpus_cache, english, textdata


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("VARIGATE_CACHE_DIR", str(tmp_path / "cache"))
    english._pools.cache_clear()
    textdata._pools.cache_clear()
    yield tmp_path / "cache"
    english._pools.cache_clear()  # later tests read the real corpora again
    textdata._pools.cache_clear()


class Builder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> dict[str, list[str]]:
        self.calls += 1
        return {"train": ["One sentence here.", f"Build number {self.calls}."], "heldout": []}


def test_second_call_hits_and_a_corrupt_file_is_rebuilt(cache: Path) -> None:
    build = Builder()
    first = corpus_cache.cached("demo", "k" * 64, build)
    assert corpus_cache.cached("demo", "k" * 64, build) == first and build.calls == 1
    path = corpus_cache.path_for("demo", "k" * 64)
    assert path.parent == cache / "corpora" and json.loads(path.read_text())["value"] == first
    for garbage in (b"\x00\xff not json", b'{"key": "kkkk", "value": [1, 2]}', b"", b'{"truncat'):
        path.write_bytes(garbage)
        calls = build.calls
        again = corpus_cache.cached("demo", "k" * 64, build)
        assert build.calls == calls + 1 and again["train"][1] == f"Build number {calls + 1}."
        assert corpus_cache.load(path, "k" * 64) == again  # rewritten whole
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left behind


def test_a_file_of_another_key_is_not_read_and_is_replaced(cache: Path) -> None:
    build = Builder()
    corpus_cache.cached("demo", "a" * 64, build)
    corpus_cache.cached("demo", "b" * 64, build)
    assert build.calls == 2
    assert [p.name for p in (cache / "corpora").iterdir()] == [corpus_cache.path_for("demo", "b" * 64).name]


def test_the_key_follows_files_code_and_settings(tmp_path: Path) -> None:
    f = tmp_path / "input.txt"
    f.write_text("first")
    base = corpus_cache.key("demo", [f], "code", {"seed": 0})
    assert corpus_cache.key("demo", [f], "code", {"seed": 0}) == base
    assert corpus_cache.key("demo", [f], "code2", {"seed": 0}) != base
    assert corpus_cache.key("demo", [f], "code", {"seed": 1}) != base
    f.write_text("second!")  # another size
    assert corpus_cache.key("demo", [f], "code", {"seed": 0}) != base
    resized = corpus_cache.key("demo", [f], "code", {"seed": 0})
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same size, another mtime
    assert corpus_cache.key("demo", [f], "code", {"seed": 0}) != resized
    assert any(d.startswith("numpy==") for d in corpus_cache.distributions())


def test_cache_directory_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VARIGATE_CACHE_DIR", str(tmp_path / "a"))
    assert corpus_cache.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("VARIGATE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert corpus_cache.cache_dir() == tmp_path / "xdg" / "varigate"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert corpus_cache.cache_dir() == tmp_path / "home" / ".cache" / "varigate"


def _plant(cache: Path, name: str, marker: str) -> list[str]:
    """Add ``marker`` to the cached file's train list (its key kept): a later load returning it read it."""
    (path,) = (cache / "corpora").glob(f"{name}-*.json")
    data = json.loads(path.read_text())
    data["value"]["train"].insert(0, marker)
    path.write_text(json.dumps(data))
    return list(data["value"]["train"])


def test_the_english_corpus_is_read_back_from_the_cache(cache: Path) -> None:
    fresh = english._pools()
    planted = _plant(cache, "english", "A sentence only the cache holds.")
    english._pools.cache_clear()
    assert list(english._pools()["train"]) == planted  # the second call read the file
    (path,) = (cache / "corpora").glob("english-*.json")
    path.write_bytes(path.read_bytes()[:100])  # cut short, as by a crash
    english._pools.cache_clear()
    assert english._pools() == fresh  # rebuilt, the same as the first extraction


def test_the_docstring_corpus_is_read_back_from_the_cache(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = [item for item in textdata._plan() if item.kind in ("pydoc", "document")]
    monkeypatch.setattr(textdata, "_plan", lambda: small)  # fewer inputs, the same code path
    train, heldout = textdata._pools()
    assert (list(train), list(heldout)) == (
        textdata._extract(small)["train"],
        textdata._extract(small)["heldout"],
    )
    assert len(train) > 100 and heldout
    planted = _plant(cache, "docstrings", "A docstring only the cache holds.")
    textdata._pools.cache_clear()
    assert list(textdata._pools()[0]) == planted
