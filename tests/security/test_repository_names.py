"""Repository API names cannot leave the repository: names that are not one plain directory entry get
400 / INVALID_ARGUMENT naming the flaw, a well-formed name that is not there 404 / NOT_FOUND, and an entry
that is a symbolic link resolving outside the repository is never loaded (nor is anything behind it read);
the repository and what lies outside it are unchanged. A link to a directory inside the repository is an
alias and loads."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from gateway.repository import ModelRepository
from tests.e2e.support import GatewayProcess
from tests.fixtures.tinyrepo import build_tiny_repository
from tests.security.support import raw_post, tree_digest

ESCAPES = "symbolic link that resolves outside the model repository"
# name -> what the refusal says (gRPC carries every name as it is; over HTTP see HTTP_ROUTE_MISS)
MALFORMED = {
    "..": "starts with '.'",
    ".": "starts with '.'",
    ".hidden": "starts with '.'",
    ".store": "starts with '.'",  # exists (the alias target below), and hidden: not a model
    "../x": "contains '/'",
    "/etc": "contains '/'",
    "a/b": "contains '/'",
    "../../../../etc/passwd": "contains '/'",
    "a\0b": "contains a NUL character",
    "tiny\nfp32": "contains a control or unprintable character",
    "m" * 256: "is longer than 255 bytes",
    "é" * 128: "is longer than 255 bytes",  # 128 characters, 256 bytes
}
LINKS = {"stolen": ESCAPES, "etc": ESCAPES, "loop": ESCAPES, "root": ESCAPES, "up": ESCAPES}


@dataclass
class Setup:
    gw: GatewayProcess
    repo: Path
    outside: Path


def copy_model(src: Path, dst: Path, name: str) -> None:
    """``src`` as a model of its own named ``name`` (logical model ``name``, variant fp32)."""
    shutil.copytree(src, dst)
    config = (dst / "config.pbtxt").read_text()
    config = config.replace(f'name: "{src.name}"', f'name: "{name}"').replace('"clf"', f'"{name}"')
    (dst / "config.pbtxt").write_text(config)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("names")
    repo = build_tiny_repository(tmp / "repo")
    outside = tmp / "outside"
    outside.mkdir()
    copy_model(repo / "clf.fp32", outside / "stolen", "stolen")  # valid: it would load if followed
    os.symlink("../outside/stolen", repo / "stolen")
    os.symlink("/etc", repo / "etc")
    os.symlink("loop", repo / "loop")  # a link to itself
    os.symlink(".", repo / "root")  # the repository itself
    os.symlink("..", repo / "up")
    copy_model(repo / "clf.fp32", repo / ".store" / "linked", "linked")
    os.symlink(".store/linked", repo / "linked")  # inside: an alias
    args = ["--model-control-mode", "explicit", "--no-strict-readiness"]
    gw = GatewayProcess(repo, tmp / "gateway.log", args)
    try:
        gw.start()
        yield Setup(gw, repo, outside)
    finally:
        gw.kill()


def test_the_scan_refuses_links_out_and_keeps_links_in(setup: Setup) -> None:
    scan = ModelRepository(setup.repo).scan()
    assert {name: scan.errors[name] for name in LINKS} == {n: f"model {n!r} is a {ESCAPES}" for n in LINKS}
    assert set(scan.models) == {"clf.fp32", "tiny.fp32", "tiny.int8", "linked"}


def http_load(gw: GatewayProcess, name: str, action: str = "load") -> tuple[int, object]:
    return raw_post(gw.http, f"/v2/repository/models/{quote(name, safe='.')}/{action}")


def test_http_names(setup: Setup) -> None:
    gw, before = setup.gw, (tree_digest(setup.repo), tree_digest(setup.outside))
    for action in ("load", "unload"):
        for name, problem in MALFORMED.items():
            status, body = http_load(gw, name, action)
            if "/" in name:  # %2F is decoded before routing: the path has more segments, no route matches
                assert status == 404 and isinstance(body, dict) and "Not Found" in body["error"], name
            else:
                assert status == 400, (name, body)
                assert isinstance(body, dict) and problem in body["error"] and "model name" in body["error"]
        status, body = http_load(gw, "nosuch", action)
        assert (status, body) == (404, {"error": "unknown model 'nosuch': not in the repository"})
    for name in LINKS:
        assert http_load(gw, name) == (400, {"error": f"model {name!r} is a {ESCAPES}"})
    assert (tree_digest(setup.repo), tree_digest(setup.outside)) == before
    with th.InferenceServerClient(gw.http) as client:
        index = {e["name"]: e for e in client.get_model_repository_index()}
        assert index["stolen"].get("state") != "READY"
        assert ESCAPES in index["stolen"]["reason"]  # refused at start, unread: it would have loaded
        assert not client.is_model_ready("stolen")
        assert http_load(gw, "linked") == (200, None)
        assert client.is_model_ready("linked")
        item = th.InferInput("x", [1, 4], "FP32")
        item.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        probs = client.infer("linked", [item]).as_numpy("probs")
        assert probs is not None and abs(float(probs.sum()) - 1.0) < 1e-5
        assert http_load(gw, "linked", "unload") == (200, None)


def test_grpc_names(setup: Setup) -> None:
    before = (tree_digest(setup.repo), tree_digest(setup.outside))
    with tg.InferenceServerClient(setup.gw.grpc) as client:
        for call in (client.load_model, client.unload_model):
            for name, problem in MALFORMED.items():
                with pytest.raises(InferenceServerException) as refused:
                    call(name)
                assert refused.value.status() == "StatusCode.INVALID_ARGUMENT", name
                assert problem in str(refused.value.message()), name
            with pytest.raises(InferenceServerException) as missing:
                call("nosuch")
            assert missing.value.status() == "StatusCode.NOT_FOUND"
            assert "unknown model 'nosuch'" in str(missing.value.message())
        for name in LINKS:
            with pytest.raises(InferenceServerException) as refused:
                client.load_model(name)
            assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
            assert refused.value.message() == f"model {name!r} is a {ESCAPES}"
        assert not client.is_model_ready("stolen")
        client.load_model("tiny.fp32")  # well-formed names still load
        assert client.is_model_ready("tiny.fp32")
    assert (tree_digest(setup.repo), tree_digest(setup.outside)) == before
