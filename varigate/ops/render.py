"""Dashboard panels drawn as PNG images from a real Prometheus's data (``query_range`` -> matplotlib), for
docs/operations.md: a Grafana server is not needed to show what the dashboard shows.

``render_panel`` draws one panel of ``varigate.ops.panels`` (each target's series, labelled by its legend);
``render_panels`` draws several into a folder, one ``<slug>.png`` each.

    python -m varigate.ops.render --prometheus http://127.0.0.1:9090 --minutes 15 --out docs/ops

renders the last 15 minutes of any Prometheus that scrapes a gateway (``--model`` / ``--instance`` set the
template variables; regular expressions, as in Grafana). The images in docs/ops come from the run of
tests/ops/test_prometheus.py (``VARIGATE_OPS_DOCS=1``; see docs/operations.md).
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from varigate.ops.panels import ROWS, Panel, substitute
from varigate.ops.promql import Prometheus

PERCENT_UNITS = ("percentunit",)


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


def _legend(template: str, labels: Mapping[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip()


def render_panel(
    api: Prometheus,
    panel: Panel,
    variables: Mapping[str, str],
    start_s: float,
    end_s: float,
    path: Path,
    step_s: float = 1.0,
) -> int:
    """Draw ``panel`` over [start_s, end_s] into ``path``; returns how many series were drawn."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    drawn = 0
    for target in panel.targets:
        expr = substitute(target.expr, dict(variables))
        for series in api.query_range(expr, start_s, end_s, step_s):
            xs = [t - start_s for t, _ in series.points]
            ys = [v * 100 if panel.unit in PERCENT_UNITS else v for _, v in series.points]
            ax.plot(xs, ys, linewidth=1.4, label=_legend(target.legend, series.labels) or expr[:40])
            drawn += 1
    ax.set_title(panel.title, fontsize=11)
    ax.set_xlabel("seconds since the start of the run")
    ax.set_ylabel({"reqps": "requests/s", "s": "seconds", "percentunit": "%"}.get(panel.unit, ""))
    ax.set_xlim(0, end_s - start_s)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def render_panels(
    api: Prometheus,
    panels: Iterable[Panel],
    variables: Mapping[str, str],
    start_s: float,
    end_s: float,
    out: Path,
    step_s: float = 1.0,
) -> dict[Path, int]:
    """``render_panel`` for each of ``panels`` into ``out/<slug>.png``; {path: series drawn}."""
    return {
        (path := out / f"{slug(p.title)}.png"): render_panel(api, p, variables, start_s, end_s, path, step_s)
        for p in panels
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m varigate.ops.render", description=__doc__)
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL")
    parser.add_argument("--minutes", type=float, default=15.0, help="how far back from now (%(default)s)")
    parser.add_argument("--model", default=".*", help="$model (%(default)s)")
    parser.add_argument("--instance", default=".*", help="$instance (%(default)s)")
    parser.add_argument("--rate-interval", default="1m", help="$__rate_interval (%(default)s)")
    parser.add_argument("--out", type=Path, default=Path("docs/ops"), help="folder (%(default)s)")
    args = parser.parse_args(argv)
    end = time.time()
    variables: dict[str, Any] = {
        "model": args.model,
        "instance": args.instance,
        "__rate_interval": args.rate_interval,
    }
    panels = [p for row in ROWS for p in row.panels]
    step = max(1.0, args.minutes * 60 / 600)
    for path, n in render_panels(
        Prometheus(args.prometheus), panels, variables, end - args.minutes * 60, end, args.out, step
    ).items():
        print(f"{path}: {n} series")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
