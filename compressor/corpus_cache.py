"""An on-disk cache for the text corpora (``compressor.textdata``, ``compressor.english``).

Extracting the docstring corpus parses tens of thousands of ``.py`` files (about a minute); the cache keeps
its result, a JSON object of string lists, under a key made of everything the result depends on:

- the Python version (``sys.version``, which also fixes the standard library) and every installed
  distribution's name and version (``importlib.metadata``);
- each input file's path, size and modification time (``st_mtime_ns``), as the caller lists them;
- the SHA-256 of the extraction code itself (the caller's modules and this one);
- whatever else the caller adds (its settings).

The files are ``<root>/corpora/<corpus>-<key>.json``; the root is ``$VARIGATE_CACHE_DIR``, else
``$XDG_CACHE_HOME/varigate``, else ``~/.cache/varigate`` (the artefact cache, ``compressor.artefacts``,
shares the root and keeps to ``<root>/artefacts``). A file is written to a temporary name in its directory
and renamed into place, so a reader sees the whole old file or the whole new one. A file that cannot be
read, is not valid JSON, or does not have the shape written is ignored and rebuilt; a directory that
cannot be written only costs the cache, never the result. Writing a corpus's file removes that corpus's
files of other keys.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

Value = dict[str, list[str]]
FORMAT = 1


def cache_dir() -> Path:
    """The cache root (the environment variables are read at each call)."""
    if os.environ.get("VARIGATE_CACHE_DIR"):
        return Path(os.environ["VARIGATE_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "varigate"
    return Path.home() / ".cache" / "varigate"


@functools.lru_cache(maxsize=1)
def distributions() -> tuple[str, ...]:
    """``name==version`` of every installed distribution, sorted."""
    found = {f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]}
    return tuple(sorted(found))


def file_stats(paths: Iterable[Path]) -> list[tuple[str, int, int]]:
    """``(path, size, mtime_ns)`` per file, in the order given; a file that vanished reads as ``-1, -1``."""
    out: list[tuple[str, int, int]] = []
    for path in paths:
        try:
            st = path.stat()
            out.append((str(path), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(path), -1, -1))
    return out


def code_hash(*modules: str) -> str:
    """SHA-256 of the named modules' source files and of this module's."""
    h = hashlib.sha256()
    for name in (*modules, __name__):
        module = sys.modules[name]
        assert module.__file__ is not None, f"module {name} has no source file"
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()


def key(name: str, files: Iterable[Path], code: str, extra: Mapping[str, Any]) -> str:
    """The cache key of corpus ``name``: Python, distributions, input files, extraction code, ``extra``."""
    blob = json.dumps(
        {
            "format": FORMAT,
            "name": name,
            "python": sys.version,
            "distributions": distributions(),
            "files": file_stats(files),
            "code": code,
            "extra": extra,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def path_for(name: str, digest: str) -> Path:
    return cache_dir() / "corpora" / f"{name}-{digest[:24]}.json"


def load(path: Path, digest: str) -> Value | None:
    """The cached value at ``path`` when it is whole and written under ``digest``; None otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != digest or not isinstance(data.get("value"), dict):
        return None
    value = data["value"]
    for items in value.values():
        if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
            return None
    return {str(k): list(v) for k, v in value.items()}


def store(path: Path, digest: str, value: Value) -> bool:
    """Write ``value`` atomically (temporary file, fsync, rename) and remove the same corpus's files of
    other keys; False when the directory is unwritable."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"key": digest, "value": value}, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return False
    for stale in path.parent.glob(f"{path.name.rsplit('-', 1)[0]}-*.json"):
        if stale != path:  # an older key's file of the same corpus: never read again
            with contextlib.suppress(OSError):
                stale.unlink()
    return True


def cached(name: str, digest: str, build: Callable[[], Value]) -> Value:
    """The value cached under ``digest``, or ``build()``'s, which is then cached."""
    path = path_for(name, digest)
    hit = load(path, digest)
    if hit is not None:
        return hit
    value = build()
    store(path, digest, value)
    return value
