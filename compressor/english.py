"""General-English sentences, offline from Debian packages, to judge MiniLM on text like its users'.

The docstring corpus (``compressor.textdata``) is technical prose; ordinary English reads differently and a
compressed embedder can fail on it while passing on docstrings. Nothing here is downloaded; the text comes
from files that Debian installs (``scripts/setup.sh`` installs the packages):

- **Held-out** (never used for training or calibration):
  1. every quote of ``/usr/share/games/fortunes/fortunes``, the file of Debian's ``fortunes-min`` package
     (the set the MiniLM structured variant was found to lose fidelity on), always, first;
  2. then the quotes of the other fortune files (package ``fortunes``) that the stable split reserves
     (a SHA-256 of the file's name, ``HELDOUT_PERCENT`` percent of them), shuffled, up to ``max_heldout``.
- **Train**: the quotes of the remaining fortune files (``fortunes-min``'s ``literature`` and ``riddles``
  and the ``fortunes`` package's files) and the DESCRIPTION sections of the English manual pages in
  ``/usr/share/man/man{1,5,7,8}/*.gz`` (the top-level sections only, so no translations; ``gcloud-*``
  pages, 16 631 generated near-copies, are skipped), read with ``gzip`` and stripped of roff markup.

Only the plain files directly in the fortunes directory are read: the offensive ``off/`` directory, the
``.dat`` indexes, the ``.u8`` links, the pictures (``art``, ``ascii-art``) and the Latin of
``translate-me`` are not. A fortune is one entry between ``%`` lines, its attribution lines
(``-- Author``) and overstrikes removed; a sentence is kept when it has 3-60 words, starts with a capital
(or a quote and a capital), ends with ``.``/``!``/``?`` (a closing quote allowed) and is mostly letters.
Duplicates are dropped case-insensitively, held-out first, so no held-out sentence is also a train one.

The extracted pools are cached on disk (``compressor.corpus_cache``, keyed by the files' paths, sizes and
mtimes, the Python and package versions and this module's code); the shuffle with ``random.Random(seed)``
runs after, so the same files and seed always give the same lists.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import random
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

from compressor import corpus_cache, roff

FORTUNES_DIR = Path("/usr/share/games/fortunes")
MAN_DIR = Path("/usr/share/man")
MAN_SECTIONS = ("man1", "man5", "man7", "man8")
HELDOUT_FILE = "fortunes"  # fortunes-min's own file: always held out
HELDOUT_PERCENT = 12
_SKIP_FORTUNES = frozenset({"art", "ascii-art", "translate-me"})
_SKIP_MAN_PREFIXES = ("gcloud",)

_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(]?[A-Z])|(?<=[.!?][\"')])\s+(?=[\"'(]?[A-Z])")
# A piece ending in one of these (or in an initial, "J.") is not a sentence's end: "Mr. Smith", "J. R. R."
_ABBREVIATION = re.compile(
    r"(?:\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|Rev|Gen|Capt|Lt|Col|Sgt|Mt|No|vs|etc|e\.g|i\.e|cf)|\b[A-Z])\.$"
)
_ATTRIBUTION = re.compile(r"^\s*(--|—|~~)\s*\S")
_OVERSTRIKE = re.compile(r".\x08")
_BAD = ("http", "://", "www.", "@", "\\", "|", "{", "}", "<", ">", "==", "_", "#", "$ ", "[", "]")


class MissingText(FileNotFoundError):
    """A Debian file the English corpus needs is not installed; the message names the package."""


def load_english(
    max_train: int = 20000, max_heldout: int = 1000, seed: int = 0
) -> tuple[list[str], list[str]]:
    """``(train, heldout)`` general-English sentences, disjoint by source file, deterministic for a seed.

    ``heldout`` starts with every quote of fortunes-min's ``fortunes`` file (shuffled), then the other
    held-out fortune files' quotes (shuffled), cut at ``max_heldout``."""
    if max_train < 0 or max_heldout < 0:
        raise ValueError(f"max_train and max_heldout must be >= 0, got {max_train} and {max_heldout}")
    pools = _pools()
    rng = random.Random(seed)
    train, first, rest = list(pools["train"]), list(pools["heldout_fortunes"]), list(pools["heldout_other"])
    rng.shuffle(train)
    rng.shuffle(first)
    rng.shuffle(rest)
    return train[:max_train], (first + rest)[:max_heldout]


def fortune_files() -> list[Path]:
    """The fortune files read, sorted by name; MissingText when fortunes-min or fortunes is missing."""
    if not (FORTUNES_DIR / HELDOUT_FILE).is_file():
        raise MissingText(
            f"{FORTUNES_DIR / HELDOUT_FILE} not found: install the Debian package fortunes-min "
            "(apt-get install fortunes-min fortunes; scripts/setup.sh does)"
        )
    files = sorted(
        p
        for p in FORTUNES_DIR.iterdir()
        if p.is_file() and not p.is_symlink() and not p.suffix and p.name not in _SKIP_FORTUNES
    )
    if len(files) < 4:  # fortunes-min alone has three
        raise MissingText(
            f"only {[p.name for p in files]} in {FORTUNES_DIR}: install the Debian package fortunes "
            "(apt-get install fortunes; scripts/setup.sh does)"
        )
    return files


def man_pages() -> list[Path]:
    """The English manual pages read (top-level sections only), sorted."""
    pages: list[Path] = []
    for section in MAN_SECTIONS:
        folder = MAN_DIR / section
        if folder.is_dir():
            pages += sorted(
                p
                for p in folder.glob("*.gz")
                if p.is_file() and not p.is_symlink() and not p.name.startswith(_SKIP_MAN_PREFIXES)
            )
    return pages


def is_heldout(path: Path) -> bool:
    """Whether a fortune file is held out: fortunes-min's ``fortunes``, or by a stable hash of its name."""
    if path.name == HELDOUT_FILE:
        return True
    digest = hashlib.sha256(f"fortunes:{path.name}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < HELDOUT_PERCENT


@functools.lru_cache(maxsize=1)
def _pools() -> dict[str, tuple[str, ...]]:
    fortunes, pages = fortune_files(), man_pages()
    digest = corpus_cache.key(
        "english",
        [*fortunes, *pages],
        corpus_cache.code_hash(__name__, roff.__name__),
        {"heldout_percent": HELDOUT_PERCENT},
    )
    value = corpus_cache.cached("english", digest, lambda: _extract(fortunes, pages))
    return {name: tuple(items) for name, items in value.items()}


def _extract(fortunes: list[Path], pages: list[Path]) -> dict[str, list[str]]:
    seen: set[str] = set()

    def take(texts: Iterator[str]) -> list[str]:
        out: list[str] = []
        for text in texts:
            for sentence in sentences(text):
                if sentence.lower() not in seen:
                    seen.add(sentence.lower())
                    out.append(sentence)
        return out

    held = [p for p in fortunes if is_heldout(p)]
    first = take(quotes(FORTUNES_DIR / HELDOUT_FILE))
    other = take(q for p in held if p.name != HELDOUT_FILE for q in quotes(p))
    train = take(q for p in fortunes if p not in held for q in quotes(p))
    train += take(para for p in pages for para in _man_paragraphs(p))
    return {"heldout_fortunes": first, "heldout_other": other, "train": train}


def quotes(path: Path) -> Iterator[str]:
    """The entries of one fortune file, attribution lines and overstrikes removed."""
    return quotes_from_text(path.read_text(encoding="utf-8", errors="replace"))


def quotes_from_text(text: str) -> Iterator[str]:
    """The entries of a fortune file's text (separated by ``%`` lines), without attributions."""
    text = _OVERSTRIKE.sub("", text)
    for entry in re.split(r"^%\s*$", text, flags=re.MULTILINE):
        lines = [ln for ln in entry.splitlines() if not _ATTRIBUTION.match(ln)]
        if any(ln.strip() for ln in lines):
            yield "\n".join(lines)


def _man_paragraphs(path: Path) -> list[str]:
    try:
        source = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
    except (OSError, EOFError, zlib.error):
        return []
    return roff.description_paragraphs(source)


def sentences(text: str) -> list[str]:
    """Clean sentences of one fortune or paragraph: whitespace flattened, split, filtered by ``keep``."""
    flat = re.sub(r"\s+", " ", text).strip()
    joined: list[str] = []
    for piece in _SPLIT.split(flat):
        if joined and _ABBREVIATION.search(joined[-1]):
            joined[-1] += " " + piece
        else:
            joined.append(piece)
    return [s for s in (x.strip() for x in joined) if keep(s)]


def keep(sentence: str) -> bool:
    words = sentence.split()
    if not 3 <= len(words) <= 60:
        return False
    start = sentence.lstrip("\"'(")
    if not start or not start[0].isupper() or sentence.rstrip("\"')")[-1:] not in (".", "!", "?"):
        return False
    if any(bad in sentence for bad in _BAD):
        return False
    letters = sum(c.isalpha() for c in sentence)
    return letters >= 0.75 * sum(not c.isspace() for c in sentence)
