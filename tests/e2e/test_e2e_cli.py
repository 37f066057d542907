"""``varigate serve`` options: flags, VARIGATE_* environment variables, and their precedence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.cli import parse_settings
from tests.e2e.support import ROOT, GatewayProcess
from tests.fixtures.tinyrepo import build_tiny_repository


def test_every_option_from_the_environment(tmp_path: Path) -> None:
    repo = build_tiny_repository(tmp_path / "repo", variants=("fp32",), classifier=False)
    gw = GatewayProcess(
        repo,
        tmp_path / "gateway.log",
        env={"VARIGATE_HTTP_RESTRICTED_API": "statistics:stats-key=1;model-config:cfg-key=2"},
    )
    try:
        gw.start(via_env=True)
        base = f"http://{gw.http}"
        assert httpx.get(f"{base}/v2/models/stats").status_code == 403
        stats = httpx.get(f"{base}/v2/models/stats", headers={"stats-key": "1"})
        assert stats.status_code == 200 and stats.json()["model_stats"][0]["name"] == "tiny.fp32"
        assert httpx.get(f"{base}/v2/models/tiny/config", headers={"stats-key": "1"}).status_code == 403
        assert (
            httpx.get(f"{base}/v2/models/tiny/config", headers={"cfg-key": "2"}).json()["max_batch_size"] == 8
        )
        assert "nv_inference_count" in httpx.get(gw.metrics_url).text
        assert gw.terminate() == 0
    finally:
        gw.kill()


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VARIGATE_HTTP_PORT", "9100")
    monkeypatch.setenv("VARIGATE_GRPC_PORT", "9101")
    monkeypatch.setenv("VARIGATE_LOAD_MODEL", "a;b")
    s = parse_settings(["--http-port", "9200", "--no-allow-metrics", "--model-repository", "/srv/models"])
    assert (s.http_port, s.grpc_port, s.allow_metrics, str(s.repository)) == (
        9200,
        9101,
        False,
        "/srv/models",
    )
    assert s.load_model == ["a", "b"]
    s = parse_settings(["--load-model", "x", "--load-model", "y", "--grpc-restricted-protocol", "health:k=v"])
    assert s.load_model == ["x", "y"] and s.grpc_restricted_protocol == ["health:k=v"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--http-port", "99999"], "--http-port"),
        (["--model-control-mode", "sometimes"], "invalid choice"),
        (["--http-restricted-api", "repository:k=v"], "unknown APIs ['repository']"),
        (["--http-port", "9000", "--grpc-port", "9000"], "ports must differ"),
    ],
)
def test_bad_options_exit_2_and_say_why(args: list[str], needle: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", *args],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and needle in done.stderr, done.stderr
