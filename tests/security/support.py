"""What the security tests measure on a real gateway: the series /metrics exposes, the process's peak
resident memory, the exact bytes of a request line, and a digest of a directory tree."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Series = frozenset[tuple[str, tuple[tuple[str, str], ...]]]


def series(text: str) -> Series:
    """Every (sample name, labels) in an exposition."""
    return frozenset(
        (s.name, tuple(sorted(s.labels.items())))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    )


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size so far (``VmHWM``): it only grows, so a request that ever
    held N more bytes shows as a rise of at least N."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def raw_post(
    address: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """POST with the request target sent byte for byte (no client-side normalisation of ``..`` or
    percent escapes); returns the status and the JSON body (None when empty, the text when not JSON)."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            conn.putheader(key, value)
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    if not data:
        return response.status, None
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, data.decode(errors="replace")


def tree_digest(root: Path) -> str:
    """Names, kinds, link targets and file contents under ``root``, links not followed."""
    h = hashlib.sha256()
    for top, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(top, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                h.update(f"L {rel} -> {os.readlink(path)}\n".encode())
            elif path.is_dir():
                h.update(f"D {rel}\n".encode())
            else:
                h.update(f"F {rel} {hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()
