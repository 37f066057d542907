"""Cross-check what the generator saw against what the server counted, from ``/metrics`` before and after.

Uses Triton's counters (so it works against Triton as well as varigate), summed over the models the run
addressed (``minilm`` covers the variants ``minilm.*``; labels ``model``/``version``):

- ``nv_inference_request_success`` must grow by exactly the successes the generator received;
- ``nv_inference_count`` (batch rows executed) by at least the rows of those successes (more is noted,
  not flagged: the server may execute rows of its own, e.g. varigate's shadow comparisons);
- per served model, successes must match the generator's variant mix (when responses name a variant);
- ``nv_inference_request_failure`` is compared with the errors the server answered (reported, not
  required to match: Triton does not count every refusal, e.g. an unknown model, as a failure).

Any other difference is a disagreement: a lost or double-counted request, another client on the same
server, or a request the generator gave up on (timeout) that the server still finished.
"""

from __future__ import annotations

import re
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from loadtest.engine import Run
from loadtest.reply import CLIENT_SIDE_KINDS

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return str(response.read().decode())


def parse(text: str) -> Samples:
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line.strip())
        if m:
            labels = dict(_LABEL.findall(m.group(2) or ""))
            samples.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return samples


def _by_model(samples: Samples, name: str, model: str) -> dict[str, float]:
    """Per served model (label ``model``) covered by the addressed ``model``, summed over other labels."""
    out: dict[str, float] = {}
    for labels, value in samples.get(name, []):
        served = labels.get("model", "")
        if served == model or served.startswith(model + "."):
            out[served] = out.get(served, 0.0) + value
    return out


def delta(before: Samples, after: Samples, name: str, model: str) -> dict[str, float]:
    """Growth of counter ``name`` per served model between two scrapes (models that did not change are left
    out)."""
    b, a = _by_model(before, name, model), _by_model(after, name, model)
    return {
        k: a.get(k, 0.0) - b.get(k, 0.0) for k in sorted(set(a) | set(b)) if a.get(k, 0.0) != b.get(k, 0.0)
    }


@dataclass(frozen=True, slots=True)
class CrossCheck:
    client_success: int
    client_rows: int
    client_server_errors: int  # errors the server answered (not timeouts / connection / overflow)
    client_timeouts: int
    server_success: int
    server_rows: int
    server_failure: int
    server_success_by_model: dict[str, int]
    client_success_by_variant: dict[str, int]
    disagreements: tuple[str, ...] = field(default_factory=tuple)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def agrees(self) -> bool:
        return not self.disagreements

    def to_dict(self) -> dict[str, Any]:
        return {
            "agrees": self.agrees,
            "disagreements": list(self.disagreements),
            "notes": list(self.notes),
            "client": {
                "success": self.client_success,
                "rows": self.client_rows,
                "server_errors": self.client_server_errors,
                "timeouts": self.client_timeouts,
                "success_by_variant": self.client_success_by_variant,
            },
            "server": {
                "success": self.server_success,
                "rows": self.server_rows,
                "failure": self.server_failure,
                "success_by_model": self.server_success_by_model,
            },
        }


def cross_check(before: str, after: str, run: Run, model: str) -> CrossCheck:
    """Compare the whole run (warm-up included: the server counted it too) with the counter deltas."""
    b, a = parse(before), parse(after)
    ok = run.error == ""
    success_by_model = {k: int(v) for k, v in delta(b, a, "nv_inference_request_success", model).items()}
    server_success = sum(success_by_model.values())
    server_rows = int(sum(delta(b, a, "nv_inference_count", model).values()))
    server_failure = int(sum(delta(b, a, "nv_inference_request_failure", model).values()))
    client_success, client_rows = int(ok.sum()), int(run.rows[ok].sum())
    errors = Counter(run.error[~ok].tolist())
    timeouts = errors.get("timeout", 0)
    server_errors = sum(n for kind, n in errors.items() if kind not in CLIENT_SIDE_KINDS)
    by_variant = dict(sorted(Counter(v for v in run.variant[ok].tolist() if v).items()))
    problems: list[str] = []
    if server_success != client_success:
        diff = server_success - client_success
        why = (
            f"; {timeouts} requests timed out at the client and may have finished on the server"
            if diff > 0 and timeouts
            else "; another client on the server?"
            if diff > 0
            else "; the server lost count of requests it answered"
        )
        problems.append(
            f"server counted {server_success} successes, the generator received {client_success} "
            f"({diff:+d}{why})"
        )
    notes: list[str] = []
    if server_rows < client_rows and server_success == client_success:
        problems.append(
            f"server executed {server_rows} rows (nv_inference_count), fewer than the "
            f"{client_rows} the generator's successes carried"
        )
    elif server_rows > client_rows:
        notes.append(
            f"server executed {server_rows - client_rows} rows more than the generator's successes "
            "carried (its own executions, e.g. shadow comparisons, or other clients)"
        )
    if by_variant and server_success == client_success:
        for name in sorted(set(by_variant) | set(success_by_model)):
            if by_variant.get(name, 0) != success_by_model.get(name, 0):
                problems.append(
                    f"model {name}: server counted {success_by_model.get(name, 0)} successes, "
                    f"responses named it {by_variant.get(name, 0)} times"
                )
    return CrossCheck(
        client_success,
        client_rows,
        server_errors,
        timeouts,
        server_success,
        server_rows,
        server_failure,
        success_by_model,
        by_variant,
        tuple(problems),
        tuple(notes),
    )
