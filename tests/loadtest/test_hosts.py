"""Load goes to loopback only, unless a host is named explicitly."""

from __future__ import annotations

import pytest

from loadtest import cli
from loadtest.hosts import HostNotAllowed, check


@pytest.mark.parametrize(
    "url", ["127.0.0.1:8001", "127.3.4.5:80", "localhost:8000", "[::1]:8001", "http://127.0.0.1:8002/metrics"]
)
def test_loopback_is_allowed(url: str) -> None:
    assert check(url) == url


@pytest.mark.parametrize(
    "url", ["10.0.0.5:8001", "example.com:8000", "http://192.168.1.2:8002/metrics", "[::2]:1"]
)
def test_other_hosts_are_refused_unless_named(url: str) -> None:
    with pytest.raises(HostNotAllowed, match="--allow-host"):
        check(url)
    host = url.split("//")[-1].rsplit(":", 1)[0].strip("[]")
    assert check(url, [host]) == url


def test_the_command_refuses_a_remote_target_before_sending(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--url", "10.1.2.3:8001", "--model", "m", "--quiet"]) == 2
    assert "refusing to send load to '10.1.2.3'" in capsys.readouterr().err


def test_the_command_refuses_a_remote_metrics_url(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--url", "127.0.0.1:1", "--model", "m", "--metrics-url", "http://10.9.9.9:8002/metrics"])
    assert code == 2
    assert "10.9.9.9" in capsys.readouterr().err
