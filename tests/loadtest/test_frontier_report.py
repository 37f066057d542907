"""The frontier section's report: per-set columns, the worse set decides, verdicts follow the numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest.benchmarks import frontier_report as fr


def _row(label: str, speedup: float, docs: float, english: float, nn: float) -> dict[str, Any]:
    curve = {
        "step": [200, 1000, 1200],
        "validation": {"docstrings": [0.8, 0.9, docs], "english": [0.7, 0.8, english]},
    }
    return {
        "label": label,
        "speedup": speedup,
        "kept": 5,
        "dropped": 2,
        "attempt": {
            "mean_cosine": min(docs, english),
            "mean_cosine_docstrings": docs,
            "nn_top1_agreement_docstrings": nn,
            "mean_cosine_english": english,
            "nn_top1_agreement_english": nn - 0.01,
            "settings": {
                "kept_layers": [0, 3, 5],
                "heads_per_layer": [12, 12, 12],
                "ffn_per_layer": [1536] * 3,
                "distil_steps": 1200,
                "stopped": "budget",
                "learning_curve": curve,
            },
        },
    }


def test_the_worse_set_decides_and_verdicts_follow_the_numbers(tmp_path: Path) -> None:
    rows = [_row("fast but loose", 2.0, 0.975, 0.95, 0.80), _row("fast and close", 1.9, 0.98, 0.972, 0.9)]
    png = fr.plot(rows, tmp_path / "f.png")
    text = fr.render("Command: x", rows, png)
    assert "7.0 rows/s" not in text
    assert "| fast but loose | 3 x ([12, 12, 12], [1536, 1536, 1536]) | 1200 (budget) | 2.00x |" in text
    assert "0.9750 / 0.800 | 0.9500 / 0.790 | 0.9500 |" in text
    assert "1000: 0.8000, 1200: 0.9500" in text  # the worse set along the learning curve
    assert "- fast but loose: 2.00x at worse-set cosine 0.9500" in text and "target missed, NN" in text
    assert (
        "- fast and close: 1.90x at worse-set cosine 0.9720, NN agreement (worse set) 0.890: "
        "speed+cosine target met, NN target met" in text
    )
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
