"""Summary definitions on a run whose every number is known, and the files they are written to."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from loadtest.engine import GeneratorCpu, Run
from loadtest.report import summarize, write_json, write_requests_csv, write_summary_csv


def _run() -> Run:
    # 10 requests scheduled 0.1 s apart; the first 2 are warm-up. Latencies 10..100 ms; #5 overloaded,
    # #9 timed out; SLO 50 ms. Variants a, a, b, b, a, a, b, b, a, a.
    n = 10
    sched = np.arange(n) * 0.1
    lat = (np.arange(n) + 1) * 0.010
    done = sched + lat
    error = np.array([""] * n, dtype=object)
    error[5], error[9] = "overloaded", "timeout"
    done[9] = np.nan
    variant = np.array(["m.a", "m.a", "m.b", "m.b"] * 2 + ["m.a", "m.a"], dtype=object)
    variant[~(error == "")] = ""
    return Run(
        "open",
        "known",
        sched,
        sched.copy(),
        done,
        error,
        variant,
        np.full(n, 50.0),
        np.full(n, 2),
        GeneratorCpu(2.0, 0.3, 0.1, 0.01, 0.5),
        warmup_s=0.2,
    )


def test_summary_numbers() -> None:
    s = summarize(_run())
    assert s.arrivals == 8 and s.succeeded == 6
    assert s.errors == {"overloaded": 1, "timeout": 1}
    # measured span: first measured arrival (0.2 s) to the last response (#8: 0.8 + 0.09 s)
    assert s.span_s == pytest.approx(0.69)
    assert s.throughput_per_s == pytest.approx(6 / 0.69)
    # within 50 ms: #2 (30 ms), #3 (40), #4 (50) -> 3 of 8 arrivals
    assert s.slo_attainment == pytest.approx(3 / 8)
    assert s.goodput_per_s == pytest.approx(3 / 0.69)
    ok_lat = np.array([30, 40, 50, 70, 80, 90], float)
    assert s.latency_ms["p50"] == pytest.approx(np.percentile(ok_lat, 50))
    assert s.latency_ms["p99.9"] == pytest.approx(np.percentile(ok_lat, 99.9))
    assert s.variants == {"m.a": 2, "m.b": 4}  # 2, 3: b; 4: a; 6, 7: b; 8: a
    assert s.variant_switches == 3
    assert s.rows_succeeded == 12
    assert s.generator_cpu_cores == pytest.approx(0.2)
    assert s.offered_per_s == pytest.approx(10.0)


def test_without_slo_goodput_is_throughput() -> None:
    run = _run()
    plain = Run(
        **{f: getattr(run, f) for f in Run.__dataclass_fields__ if f != "slo_ms"}, slo_ms=np.full(10, np.nan)
    )
    s = summarize(plain)
    assert s.slo_attainment is None and s.goodput_per_s == s.throughput_per_s


def test_files(tmp_path: Path) -> None:
    run = _run()
    s = summarize(run, {"protocol": "grpc"})
    write_json(tmp_path / "summary.json", s, {"rate": 10})
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert doc["summary"]["succeeded"] == 6 and doc["config"] == {"rate": 10}
    assert doc["summary"]["extra"]["protocol"] == "grpc"
    write_summary_csv(tmp_path / "summary.csv", [s, s])
    rows = list(csv.DictReader((tmp_path / "summary.csv").read_text().splitlines()))
    assert len(rows) == 2 and rows[0]["latency_ms.p99"] and rows[0]["errors.timeout"] == "1"
    write_requests_csv(tmp_path / "requests.csv", run)
    lines = list(csv.DictReader((tmp_path / "requests.csv").read_text().splitlines()))
    assert len(lines) == 10
    assert lines[9]["error"] == "timeout" and lines[9]["done_ms"] == "" and lines[0]["warmup"] == "1"
    assert float(lines[3]["latency_ms"]) == pytest.approx(40.0)
