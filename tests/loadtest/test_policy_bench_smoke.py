"""The policy section end to end on the tiny repository, at a tenth of its lengths and one workload: real
gateways, real calibration, every policy's row, the targets and the burst plot. A gateway that refuses its
flags is left out with a note instead of failing the section. About 20 s; not a measurement."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.image

from loadtest.benchmarks.policy import bench
from loadtest.benchmarks.policy_plan import GATEWAY_ARGS, Plan
from loadtest.benchmarks.policy_render import MIX_PNG
from tests.fixtures.tinyrepo import build_tiny_repository
from tests.loadtest.conftest import tiny_payloads


def test_the_section_runs_on_tiny_models(tmp_path: Path) -> None:
    repo = build_tiny_repository(tmp_path / "repo")
    refused = {**GATEWAY_ARGS, "per-request": ("--policy", "no-such-policy")}
    text = bench(
        repo,
        "tiny",
        tiny_payloads(32),
        Plan(1, 0.1, ("bursts",)),
        tmp_path / "docs",
        with_triton=False,
        gateway_args=refused,
    )
    slo = re.search(r"so the SLO is (\d+) ms \(4x\)", text)
    assert slo is not None and int(slo.group(1)) >= 1, text
    capacity = re.search(r"pinned variant: fp32 ([\d.]+)/s, int8 ([\d.]+)/s\.", text)
    assert capacity is not None and float(capacity.group(1)) > 0 and float(capacity.group(2)) > 0, text
    assert "Note: `--policy no-such-policy` was refused by the gateway, so per-request is not run" in text
    assert "Note: static pruned-structured-int8 is not run: tiny has no pruned-structured-int8" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| bursts")]
    assert [ln.split(" | ")[1] for ln in rows] == ["varigate", "INFaaS-style", "static fp32", "static int8"]
    for row in rows:
        cells = row.split(" | ")
        arrivals = int(cells[4].split(" / ")[1])
        assert arrivals > 10 and cells[3].endswith("%")  # every arrival counted, attainment given
    statuses = re.findall(r"^- \((a|b|c|d)\) \*\*(met|missed|not tested)\*\*", text, re.MULTILINE)
    assert [t for t, _ in statuses] == ["a", "b", "c", "d"], text
    assert dict(statuses)["d"] == "not tested"  # no pruned-structured-int8 here
    png = tmp_path / "docs" / "plots" / MIX_PNG
    assert f"](plots/{MIX_PNG})" in text and matplotlib.image.imread(png).shape[0] > 300
