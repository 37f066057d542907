"""The dashboard JSON in deploy/grafana is what ``python -m varigate.ops.dashboard`` generates, templated by
datasource, model and instance, with the panels the operations guide reads."""

from __future__ import annotations

import json
import subprocess
import sys

from loadtest.server import ROOT
from varigate.ops import dashboard, panels

REQUIRED = {
    "request rate and goodput by variant": ["Request rate by variant", "Goodput by variant"],
    "p50/p99 from histograms": ["Request latency p50 / p99 by variant"],
    "queue depth and executed batch size": ["Queue depth and in-flight requests", "Executed batch size"],
    "variant mix over time": ["Variant mix over time"],
    "SLO attainment": ["SLO attainment"],
    "live agreement and drift per variant": ["Live agreement per variant", "Accuracy drift per variant"],
    "early rejections and errors by reason": ["Early rejections by reason", "Errors by reason"],
    "per-backend-server health": ["Backend server up", "Circuit state and outstanding calls"],
}


def test_the_checked_in_json_is_what_the_generator_writes() -> None:
    assert dashboard.OUTPUT.read_text() == dashboard.render()
    done = subprocess.run(
        [sys.executable, "-m", "varigate.ops.dashboard", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_templated_by_model_and_instance_with_every_required_panel() -> None:
    board = json.loads(dashboard.OUTPUT.read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == {"datasource", "model", "instance"}
    assert "varigate_requests_total" in variables["model"]["query"]
    assert "$model" in variables["instance"]["query"]
    titles = [p["title"] for p in board["panels"] if p["type"] != "row"]
    assert len(titles) == len(set(titles))
    for need, having in REQUIRED.items():
        assert set(having) <= set(titles), need
    for title, expr, _legend in dashboard.queries(board):
        assert "$instance" in expr, title  # every query follows the instance picker
        if not title.startswith("Backend server") and not title.startswith("Circuit"):
            assert "$model" in expr, title
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    assert len(dashboard.queries(board)) == sum(len(p.targets) for r in panels.ROWS for p in r.panels)


def test_check_reports_a_stale_file() -> None:
    stale = dashboard.OUTPUT.parent / "does-not-exist.json"
    assert dashboard.main(["--check", "--output", str(stale)]) == 1
