"""``varigate loadtest`` end to end against a real gateway: results on disk, exit status, trace replay."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loadtest import cli
from loadtest.server import GatewayProcess
from varigate.cli import main as varigate_main


def _npz(tmp_path: Path) -> Path:
    f = tmp_path / "rows.npz"
    rng = np.random.default_rng(3)
    np.savez(f, input_ids=rng.integers(1, 32, size=(20, 5)), attention_mask=np.ones((20, 5), np.int64))
    return f


def test_open_loop_writes_every_result(
    tiny_gateway: GatewayProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = varigate_main(
        [
            "loadtest",
            "--url",
            tiny_gateway.http,
            "--protocol",
            "http-binary",
            "--model",
            "tiny",
            "--data",
            "npz",
            "--data-file",
            str(_npz(tmp_path)),
            "--arrival",
            "poisson",
            "--rate",
            "80",
            "--duration",
            "0.6",
            "--slo-ms",
            "200",
            "--max-accuracy-loss",
            "0.02",
            "--metrics-url",
            tiny_gateway.metrics_url,
            "--out",
            str(out),
            "--fail-on-mismatch",
        ]
    )
    text = capsys.readouterr()
    assert code == 0, text
    assert "metrics cross-check: server counts agree" in text.out
    assert "sent" in text.err  # the progress display's final line
    names = {p.name for p in out.iterdir()}
    assert names == {"summary.json", "summary.csv", "requests.csv", "timeline.png", "cdf.png"}
    doc = json.loads((out / "summary.json").read_text())
    summary = doc["summary"]
    assert summary["arrivals"] == summary["succeeded"] > 20
    assert summary["slo_attainment"] is not None and summary["variants"] == {
        "tiny.fp32": summary["succeeded"]
    }
    assert summary["extra"]["metrics_check"]["agrees"] is True
    assert doc["config"]["max_accuracy_loss"] == 0.02
    rows = list(csv.DictReader((out / "requests.csv").read_text().splitlines()))
    assert len(rows) == summary["arrivals"]


def test_closed_loop_json_and_auto_payloads(
    tiny_gateway: GatewayProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        [
            "--url",
            tiny_gateway.grpc,
            "--protocol",
            "grpc",
            "--model",
            "clf",
            "--concurrency",
            "2",
            "--duration",
            "0.4",
            "--json",
            "--quiet",
            "--metrics-url",
            "none",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    summary = json.loads(captured.out)
    assert summary["mode"] == "closed" and summary["extra"]["concurrency"] == 2
    assert summary["errors"] == {} and "random values" in summary["extra"]["payloads"]
    assert captured.err == ""


def test_trace_replay_judges_each_request_by_its_own_slo(
    tiny_gateway: GatewayProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text(
        "timestamp,slo_ms\n" + "".join(f"{i * 0.02:.2f},{1000 if i % 2 else 0.001}\n" for i in range(20))
    )
    code = cli.main(
        [
            "--url",
            tiny_gateway.grpc,
            "--protocol",
            "grpc-stream",
            "--model",
            "tiny",
            "--arrival",
            "trace",
            "--trace",
            str(trace),
            "--data",
            "npz",
            "--data-file",
            str(_npz(tmp_path)),
            "--json",
            "--quiet",
            "--metrics-url",
            "none",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["arrivals"] == 20 and summary["succeeded"] >= 10  # a 1 µs SLO may be refused at once
    assert summary["slo_attainment"] == 0.5  # the 1 s SLOs are met, the 1 µs ones cannot be


def test_failures_set_the_exit_status(
    tiny_gateway: GatewayProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        [
            "--url",
            tiny_gateway.http,
            "--protocol",
            "http-json",
            "--model",
            "missing",
            "--data",
            "npz",
            "--data-file",
            str(_npz(tmp_path)),
            "--rate",
            "50",
            "--duration",
            "0.2",
            "--quiet",
            "--metrics-url",
            "none",
            "--fail-on-errors",
        ]
    )
    assert code == 1
    assert "not_found" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "0"], "--rate must be > 0"),
        (["--arrival", "trace"], "needs --trace FILE"),
        (["--concurrency", "0"], "--concurrency"),
        (["--data", "npz"], "needs --data-file"),
    ],
)
def test_bad_options_are_named(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--url", "127.0.0.1:1", "--model", "m", *args]) == 2
    assert message in capsys.readouterr().err


def test_a_trace_plays_whole_unless_a_duration_cuts_it(tmp_path: Path) -> None:
    from loadtest.config import LoadTestConfig

    trace = tmp_path / "long.txt"
    trace.write_text("".join(f"{t}\n" for t in range(0, 30, 2)))  # 15 arrivals over 28 s
    base: dict[str, Any] = {"url": "127.0.0.1:1", "model": "m", "arrival": "trace", "trace": trace}
    assert len(LoadTestConfig(**base).schedule()) == 15
    assert len(LoadTestConfig(**base, duration_s=10).schedule()) == 5
    assert len(LoadTestConfig(**base, max_requests=3).schedule()) == 3
