from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from compressor import cli


def tree_digest(root: Path) -> str:
    """Hash of every file's path and bytes under ``root`` (empty string if it does not exist)."""
    if not root.exists():
        return ""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="session")
def digits_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits CNN and all its variants, built once through the CLI as a user would (fast settings)."""
    out = tmp_path_factory.mktemp("repo") / "model_repository"
    assert cli.main(["digits", "--out", str(out), "--fast", "--quiet"]) == 0
    return out
