"""Results of a run: the summary (JSON and a one-row CSV) and every request (CSV).

Definitions (requests scheduled during the warm-up are left out of everything):

- ``arrivals``: requests scheduled (open loop) or sent (closed loop).
- ``throughput_per_s``: successful responses / the measured span (first arrival to last response).
- ``goodput_per_s``: successful responses within their SLO / the same span (= throughput without SLO).
- ``slo_attainment``: successful responses within their SLO / arrivals; errors, overflows and timeouts
  count as misses. ``None`` when no request had an SLO.
- latency percentiles over successful requests, from the scheduled time (open loop) or the send (closed).
- ``send_lag_ms``: how late the generator sent requests against their schedule (its own health).
- ``variant_switches``: changes of serving variant between consecutive responses in completion order.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.engine import Run

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


@dataclass(frozen=True, slots=True)
class Summary:
    mode: str
    description: str
    arrivals: int
    succeeded: int
    span_s: float
    offered_per_s: float
    throughput_per_s: float
    goodput_per_s: float
    slo_attainment: float | None
    latency_ms: dict[str, float | None]
    mean_latency_ms: float | None
    errors: dict[str, int]
    variants: dict[str, int]
    variant_switches: int
    send_lag_ms: dict[str, float | None]
    rows_succeeded: int
    generator_cpu_cores: float
    generator_cpu_s: float
    steal_fraction: float
    other_cores: float
    started_at: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def summarize(run: Run, extra: dict[str, Any] | None = None) -> Summary:
    m = run.measured()
    sched, done, sent = run.scheduled_s[m], run.done_s[m], run.sent_s[m]
    err, variant, slo = run.error[m], run.variant[m], run.slo_ms[m]
    ok = err == ""
    lat = (done - sched)[ok] * 1000.0
    n = int(m.sum())
    last = float(np.nanmax(done)) if np.any(~np.isnan(done)) else 0.0
    first = float(sched.min()) if n else 0.0
    span = max(last - first, 1e-9) if n else 0.0
    has_slo = ~np.isnan(slo)
    in_slo = ok & (~has_slo | (((done - sched) * 1000.0) <= np.where(has_slo, slo, np.inf)))
    attainment = float(in_slo[has_slo].sum() / has_slo.sum()) if has_slo.any() else None
    arrival_span = float(sched.max() - sched.min()) if n > 1 else 0.0
    order = np.argsort(done[ok], kind="stable")
    seq = variant[ok][order]
    switches = int(np.sum(seq[1:] != seq[:-1])) if len(seq) > 1 else 0
    lag = (sent - sched)[~np.isnan(sent)] * 1000.0
    return Summary(
        mode=run.mode,
        description=run.description,
        arrivals=n,
        succeeded=int(ok.sum()),
        span_s=span,
        offered_per_s=(n - 1) / arrival_span if arrival_span > 0 else float(n),
        throughput_per_s=float(ok.sum() / span) if span else 0.0,
        goodput_per_s=float(in_slo.sum() / span) if span else 0.0,
        slo_attainment=attainment,
        latency_ms=percentiles(lat),
        mean_latency_ms=float(lat.mean()) if len(lat) else None,
        errors=dict(sorted(Counter(err[~ok].tolist()).items())),
        variants=dict(sorted(Counter(variant[ok].tolist()).items())),
        variant_switches=switches,
        send_lag_ms={
            "p50": _pct(lag, 50),
            "p99": _pct(lag, 99),
            "max": float(lag.max()) if len(lag) else None,
        },
        rows_succeeded=int(run.rows[m][ok].sum()),
        generator_cpu_cores=run.cpu.cores,
        generator_cpu_s=run.cpu.user_s + run.cpu.system_s,
        steal_fraction=run.cpu.steal_fraction,
        other_cores=run.cpu.other_cores,
        started_at=_iso(run.started_at),
        extra={**run.info, **(extra or {})},
    )


def percentiles(latency_ms: np.ndarray) -> dict[str, float | None]:
    return {f"p{p:g}": _pct(latency_ms, p) for p in PERCENTILES}


def _pct(values: np.ndarray, p: float) -> float | None:
    return float(np.percentile(values, p)) if len(values) else None


def _iso(epoch: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(timespec="seconds")


def write_json(path: Path, summary: Summary, config: dict[str, Any] | None = None) -> None:
    doc = {"summary": summary.to_dict(), "config": config or {}}
    path.write_text(json.dumps(doc, indent=2, default=_jsonable) + "\n")


def summary_row(summary: Summary) -> dict[str, Any]:
    """The summary flattened to one CSV row (nested dicts become ``key.subkey`` columns)."""
    row: dict[str, Any] = {}
    for key, value in summary.to_dict().items():
        if isinstance(value, dict):
            for k, v in value.items():
                row[f"{key}.{k}"] = v if not isinstance(v, (dict, list)) else json.dumps(v, default=_jsonable)
        else:
            row[key] = value
    return row


def write_summary_csv(path: Path, summaries: list[Summary]) -> None:
    rows = [summary_row(s) for s in summaries]
    columns: list[str] = []
    for r in rows:
        columns += [c for c in r if c not in columns]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        w.writerows(rows)


def write_requests_csv(path: Path, run: Run) -> None:
    """One line per request: times in ms from the start, latency from the scheduled time."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "index",
                "scheduled_ms",
                "sent_ms",
                "done_ms",
                "latency_ms",
                "ok",
                "error",
                "variant",
                "slo_ms",
                "rows",
                "warmup",
            ]
        )
        lat = run.latency_ms
        for i in range(len(run.scheduled_s)):
            w.writerow(
                [
                    i,
                    _ms(run.scheduled_s[i]),
                    _ms(run.sent_s[i]),
                    _ms(run.done_s[i]),
                    _num(lat[i]),
                    int(run.error[i] == ""),
                    run.error[i],
                    run.variant[i],
                    _num(run.slo_ms[i]),
                    int(run.rows[i]),
                    int(run.scheduled_s[i] < run.warmup_s),
                ]
            )


def _ms(seconds: float) -> str:
    return "" if math.isnan(seconds) else f"{seconds * 1000.0:.3f}"


def _num(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.3f}"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def format_text(s: Summary) -> str:
    """A few lines for the terminal."""
    lat = " ".join(f"{k} {v:.2f}" for k, v in s.latency_ms.items() if v is not None)
    slo = f", SLO attainment {s.slo_attainment:.2%}" if s.slo_attainment is not None else ""
    lines = [
        f"{s.description}: {s.arrivals} requests over {s.span_s:.1f} s (offered {s.offered_per_s:.1f}/s)",
        f"  throughput {s.throughput_per_s:.1f}/s, goodput {s.goodput_per_s:.1f}/s{slo}",
        f"  latency ms: {lat or '-'}",
        f"  errors: {s.errors or 'none'}; variants: {s.variants or '-'} ({s.variant_switches} switches)",
        (
            f"  generator CPU {s.generator_cpu_cores:.2f} cores; machine steal {s.steal_fraction:.1%}, "
            f"other processes {s.other_cores:.2f} cores"
        ),
    ]
    return "\n".join(lines)
