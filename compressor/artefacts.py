"""An on-disk cache of built variants, keyed by build key, so an up-to-date upstream is never built twice.

When a variant must be rebuilt but its upstream is up to date in the repository, the pipeline needs the
upstream's ONNX file in its own work directory (it never reads the repository back): without this cache it
builds the upstream again (for MiniLM's pruned-structured, minutes of distillation). Every variant the
pipeline builds and gates is kept here: ``<root>/artefacts/<build key>/`` holds ``model.onnx`` and
``entry.json`` (the file's sha256 and size, the pass settings, the gate's score and every attempt).

- Root: ``$VARIGATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/varigate``, else ``~/.cache/varigate``.
- Bound: ``$VARIGATE_CACHE_MAX_BYTES`` (default 2 GiB; ``0`` turns the cache off). After each store the
  least recently used entries beyond the bound are evicted.
- Written atomically: staged in ``artefacts/.incoming-<pid>-*`` (fsynced), then renamed into place; what a
  killed writer left is removed by the next store once its pid is gone.
- Verified on read: the copy into the work directory is hashed; an entry whose hash, size or metadata
  does not match is removed and the variant rebuilt.
- The build key changes with every input of a variant (``compressor.provenance.build_key``), so a hit is
  the file the pipeline would build. A cache that cannot be written (full disk, permissions) only logs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor.evaluate import Score
from compressor.gate import Gated
from compressor.passes.base import PassResult
from compressor.repository import pid_alive

Log = Callable[[str], None]
DEFAULT_MAX_BYTES = 2 * 2**30
FORMAT = 1
MODEL, ENTRY, INCOMING = "model.onnx", "entry.json", ".incoming-"


def cache_root(env: dict[str, str] | None = None) -> Path:
    """Where the cache lives, from the environment (see the module's docstring)."""
    e = os.environ if env is None else env
    if e.get("VARIGATE_CACHE_DIR"):
        return Path(e["VARIGATE_CACHE_DIR"])
    base = Path(e["XDG_CACHE_HOME"]) if e.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "varigate"


def max_bytes(env: dict[str, str] | None = None) -> int:
    e = os.environ if env is None else env
    raw = e.get("VARIGATE_CACHE_MAX_BYTES", "")
    try:
        return int(raw) if raw else DEFAULT_MAX_BYTES
    except ValueError:
        raise ValueError(f"VARIGATE_CACHE_MAX_BYTES must be a number of bytes, got {raw!r}") from None


@dataclass
class Counters:
    """What the cache did in one run (tests read these instead of timing anything)."""

    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    stores: int = 0
    evicted: int = 0


class ArtefactCache:
    def __init__(self, root: Path, limit: int = DEFAULT_MAX_BYTES, log: Log = print) -> None:
        self.dir, self.limit, self.log = root / "artefacts", limit, log
        self.counters = Counters()

    @classmethod
    def from_env(cls, log: Log = print) -> ArtefactCache | None:
        """The cache the environment names; None when ``VARIGATE_CACHE_MAX_BYTES=0``."""
        limit = max_bytes()
        return cls(cache_root(), limit, log) if limit > 0 else None

    def load(self, key: str, work: Path, stem: str = "cached") -> Gated | None:
        """The cached gated result for ``key``, its file copied to ``work/<stem>.cached.onnx`` and verified;
        None on a miss (a corrupt entry is removed and counted as a miss)."""
        entry = self.dir / key
        if not (entry / ENTRY).is_file():
            self.counters.misses += 1
            return None
        target = work / f"{stem}.cached.onnx"
        try:
            meta = json.loads((entry / ENTRY).read_text())
            if meta.get("format") != FORMAT or meta.get("key") != key:
                raise ValueError(f"entry for another key or format: {meta.get('key')!r}")
            digest, size = _copy_hashed(entry / MODEL, target)
            if (digest, size) != (meta["sha256"], meta["size_bytes"]):
                raise ValueError(
                    f"model.onnx has sha256 {digest[:12]}… ({size} bytes), entry says "
                    f"{str(meta['sha256'])[:12]}… ({meta['size_bytes']} bytes)"
                )
            gated = _gated(target, meta)
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.log(f"  artefact cache: entry {key} is unusable ({e}); removed, building instead")
            target.unlink(missing_ok=True)
            shutil.rmtree(entry, ignore_errors=True)
            self.counters.corrupt += 1
            self.counters.misses += 1
            return None
        os.utime(entry)  # last used: eviction removes the least recently used first
        self.counters.hits += 1
        return gated

    def store(self, key: str, made: Gated) -> None:
        """Keep ``made`` under ``key`` (atomically); then evict beyond the bound. Never raises OSError."""
        size = made.result.path.stat().st_size
        if size > self.limit or (self.dir / key / ENTRY).is_file():
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._clean_incoming()
            shutil.rmtree(self.dir / key, ignore_errors=True)  # a partial entry (no entry.json) is replaced
            stage = Path(tempfile.mkdtemp(prefix=f"{INCOMING}{os.getpid()}-", dir=self.dir))
            try:
                digest, size = _copy_hashed(made.result.path, stage / MODEL)
                (stage / ENTRY).write_text(json.dumps(_meta(key, made, digest, size), sort_keys=True))
                _fsync_tree(stage)
                if not _rename_new(stage, self.dir / key):
                    return  # another writer got there first: theirs stays
            finally:
                shutil.rmtree(stage, ignore_errors=True)
            self.counters.stores += 1
            self.evict(keep=key)
        except OSError as e:
            self.log(f"  artefact cache: cannot store {key} in {self.dir} ({e}); the build goes on")

    def evict(self, keep: str = "") -> None:
        """Remove the least recently used entries until the cache holds at most ``limit`` bytes."""
        entries = []
        for d in self.dir.iterdir():
            if d.name.startswith(INCOMING) or not d.is_dir():
                continue
            try:
                entries.append((d.stat().st_mtime_ns, _size(d), d))
            except OSError:
                continue  # removed meanwhile
        total = sum(s for _, s, _ in entries)
        for _, s, d in sorted(entries):
            if total <= self.limit:
                break
            if d.name != keep:
                shutil.rmtree(d, ignore_errors=True)
                total -= s
                self.counters.evicted += 1

    def _clean_incoming(self) -> None:
        for d in self.dir.glob(f"{INCOMING}*"):
            pid = d.name[len(INCOMING) :].split("-", 1)[0]
            if not pid.isdigit() or not pid_alive(int(pid)):
                shutil.rmtree(d, ignore_errors=True)


def _meta(key: str, made: Gated, digest: str, size: int) -> dict[str, Any]:
    score = made.score
    return {
        "format": FORMAT,
        "key": key,
        "sha256": digest,
        "size_bytes": size,
        "settings": made.result.settings,
        "score": {"metric": score.metric, "value": score.value, "extra": score.extra},
        "attempts": made.attempts,
    }


def _gated(path: Path, meta: dict[str, Any]) -> Gated:
    s = meta["score"]
    score = Score(str(s["metric"]), float(s["value"]), {str(k): float(v) for k, v in s["extra"].items()})
    return Gated(PassResult(path, dict(meta["settings"])), score, list(meta["attempts"]))


def _copy_hashed(src: Path, dst: Path) -> tuple[str, int]:
    """Copy ``src`` to ``dst``; the sha256 and size of the bytes copied."""
    h, size = hashlib.sha256(), 0
    with src.open("rb") as fin, dst.open("wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
            fout.write(chunk)
    return h.hexdigest(), size


def _fsync_tree(stage: Path) -> None:
    for p in (*stage.iterdir(), stage):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _rename_new(stage: Path, target: Path) -> bool:
    """Rename ``stage`` to ``target`` unless ``target`` exists (False then)."""
    try:
        os.rename(stage, target)
    except OSError:
        if (target / ENTRY).is_file():
            return False
        raise
    return True


def _size(d: Path) -> int:
    return sum(p.stat().st_size for p in d.iterdir() if p.is_file())
