"""The general-English corpus from Debian's fortune files and manual pages (compressor.english, roff)."""

from __future__ import annotations

from pathlib import Path

import pytest

from compressor import english, roff


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test extracts into its own cache directory (the extraction takes seconds, not minutes)."""
    monkeypatch.setenv("VARIGATE_CACHE_DIR", str(tmp_path / "cache"))
    english._pools.cache_clear()


def test_heldout_holds_the_fortunes_min_quotes_and_train_thousands() -> None:
    train, heldout = english.load_english()
    quotes = {s for q in english.quotes(english.FORTUNES_DIR / "fortunes") for s in english.sentences(q)}
    assert len(quotes) > 400
    assert quotes <= set(heldout)  # every quote of the file the issue measured on, whole
    assert "Avoid reality at all costs." in heldout
    assert len(heldout) == 1000 and len(train) == 20000
    assert len(english._pools()["train"]) > 10000


def test_train_and_heldout_are_disjoint_by_source_file() -> None:
    files = english.fortune_files()
    held = {p.name for p in files if english.is_heldout(p)}
    assert "fortunes" in held and 1 < len(held) < len(files) // 2
    assert not {"off", "art", "ascii-art", "translate-me"} & {p.name for p in files}
    train, heldout = english.load_english(max_train=10**6, max_heldout=10**6)
    held_text = {
        s.lower() for p in files if p.name in held for q in english.quotes(p) for s in english.sentences(q)
    }
    assert {s.lower() for s in heldout} <= held_text
    assert not {s.lower() for s in train} & held_text  # not even a quote a train file repeats
    assert len({s.lower() for s in train}) == len(train)  # no duplicates either


def test_same_seed_same_lists_other_seed_other_order() -> None:
    a = english.load_english(max_train=500, max_heldout=300, seed=0)
    english._pools.cache_clear()
    b = english.load_english(max_train=500, max_heldout=300, seed=0)
    c = english.load_english(max_train=500, max_heldout=300, seed=1)
    assert a == b
    assert a != c and set(a[1]) != set() and len(c[1]) == 300


def test_missing_debian_files_name_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(english, "FORTUNES_DIR", tmp_path / "fortunes")
    with pytest.raises(english.MissingText, match="fortunes-min"):
        english.load_english()
    (tmp_path / "fortunes").mkdir()
    (tmp_path / "fortunes" / "fortunes").write_text("A quote that stands alone here.\n%\n")
    with pytest.raises(english.MissingText, match="package fortunes "):
        english.load_english()


def test_a_fortune_loses_its_attribution_and_keeps_its_sentences() -> None:
    text = "Mr. Smith went to Washington.  He came back!\n\t\t-- Anonymous Author\n"
    (quote,) = list(english.quotes_from_text(text))
    assert english.sentences(quote) == ["Mr. Smith went to Washington.", "He came back!"]
    assert english.sentences("see http://example.org for more") == []
    assert english.sentences("Two words.") == []


def test_roff_description_prose_without_markup_or_examples() -> None:
    page = "\n".join(
        [
            '.\\" a comment that is not text',
            ".TH DEMO 1",
            ".SH NAME",
            "demo \\- a demonstration",
            ".SH DESCRIPTION",
            ".B demo",
            "copies \\fIfiles\\fR to the \\(lqright\\(rq place \\- quickly.",
            ".PP",
            "See",
            ".BR cp (1)",
            "for more.",
            ".nf",
            "demo --all > out.txt",
            ".fi",
            ".TP",
            "\\fB\\-a\\fR",
            "Copy all the files at once.",
            ".SH SEE ALSO",
            "Nothing here is read.",
        ]
    )
    assert roff.description_paragraphs(page) == [
        'demo copies files to the "right" place - quickly.',
        "See cp(1) for more.",
        "-a",
        "Copy all the files at once.",
    ]
    assert roff.description_paragraphs(".Dd May 1\n.Sh DESCRIPTION\n.Nm ssh\nis a client.\n") == []
