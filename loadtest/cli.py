"""``varigate loadtest``: open- or closed-loop load against varigate or any Triton / KServe v2 server.

Examples::

    varigate loadtest --url 127.0.0.1:8001 --model minilm --rate 50 --duration 30 --slo-ms 50 --out results/
    varigate loadtest --url 127.0.0.1:8000 --protocol http-binary --model minilm.int8 --concurrency 16
    varigate loadtest --url 127.0.0.1:8001 --model minilm --arrival bursts --rate 20 --burst-rate 200
    varigate loadtest --url 127.0.0.1:8001 --model digits --arrival trace --trace arrivals.csv

Only loopback targets unless ``--allow-host HOST``. Exit status: 0 when the run finished (whatever the
server answered), 1 when ``--fail-on-errors`` / ``--fail-on-mismatch`` tripped, 2 on bad options.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from loadtest.clients import Protocol


def _param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(value.lower(), value)


# Flags by group: (flag, the LoadTestConfig field it sets, add_argument options). Help and defaults come
# from the config model (one place); a flag with no field is the CLI's own (its options say everything).
_Flag = tuple[str, str | None, dict[str, Any]]
_S = {"metavar": "S"}
_GROUPS: tuple[tuple[str, tuple[_Flag, ...]], ...] = (
    (
        "target",
        (
            ("--url", "url", {"required": True}),
            ("--protocol", "protocol", {"choices": [x.value for x in Protocol]}),
            ("--model", "model", {"required": True}),
            ("--model-version", "model_version", {}),
            (
                "--metrics-url",
                None,
                {
                    "dest": "metrics_url",
                    "help": "server /metrics for the cross-check: a URL, "
                    "'auto' (the target's host, port 8002: Triton's default; the default) or 'none'",
                },
            ),
            (
                "--allow-host",
                "allow_hosts",
                {"action": "append", "metavar": "HOST", "help": "allow this non-loopback host"},
            ),
            ("--server-pid", "server_pids", {"action": "append", "type": int, "metavar": "PID"}),
        ),
    ),
    (
        "load (open loop unless --concurrency)",
        (
            ("--arrival", "arrival", {"choices": ["constant", "poisson", "bursts", "step", "trace"]}),
            ("--rate", "rate", {"type": float}),
            ("--burst-rate", "burst_rate", {"type": float}),
            ("--burst-on", "burst_on_s", {"type": float, **_S}),
            ("--burst-period", "burst_period_s", {"type": float, **_S}),
            ("--step-rate", "step_rate", {"type": float}),
            ("--step-at", "step_at_s", {"type": float, **_S}),
            ("--trace", "trace", {"type": Path}),
            ("--trace-speed", "trace_speed", {"type": float}),
            ("--concurrency", "concurrency", {"type": int}),
            ("--duration", "duration_s", {"type": float, **_S}),
            ("--max-requests", "max_requests", {"type": int}),
            ("--warmup", "warmup_s", {"type": float, **_S}),
            ("--seed", "seed", {"type": int}),
            ("--timeout", "timeout_s", {"type": float, **_S}),
            ("--max-inflight", "max_inflight", {"type": int}),
        ),
    ),
    (
        "payloads and parameters",
        (
            ("--data", "data", {"choices": ["auto", "sentences", "digits", "random", "npz"]}),
            ("--data-file", "data_file", {"type": Path}),
            ("--batch", "batch", {"type": int}),
            ("--seq-len", "seq_len", {"type": int}),
            ("--payloads", "payloads", {"type": int}),
            (
                "--output",
                "outputs",
                {"action": "append", "help": "an output to request (repeatable; default: all)"},
            ),
            ("--slo-ms", "slo_ms", {"type": float}),
            (
                "--no-send-slo",
                "send_slo",
                {"action": "store_false", "help": "judge by --slo-ms without sending it"},
            ),
            ("--max-accuracy-loss", "max_accuracy_loss", {"type": float}),
            (
                "--param",
                "parameters",
                {
                    "action": "append",
                    "type": _param,
                    "metavar": "KEY=VALUE",
                    "help": "an extra request parameter (repeatable)",
                },
            ),
        ),
    ),
    (
        "results",
        (
            ("--out", "out", {"type": Path}),
            ("--no-plots", "plots", {"action": "store_false", "help": "no PNG plots"}),
            ("--quiet", "progress", {"action": "store_false", "help": "no live progress"}),
            ("--json", None, {"action": "store_true", "default": False, "help": "print the summary as JSON"}),
            (
                "--fail-on-errors",
                None,
                {"action": "store_true", "default": False, "help": "exit 1 if any request failed"},
            ),
            (
                "--fail-on-mismatch",
                None,
                {
                    "action": "store_true",
                    "default": False,
                    "help": "exit 1 if the metrics cross-check disagreed",
                },
            ),
        ),
    ),
)


def _field_help(field: str, help_text: str | None) -> str:
    """The field's description (or ``help_text``), with its default when that says something."""
    from loadtest.config import LoadTestConfig

    info = LoadTestConfig.model_fields[field]
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    shown = "" if default in (None, (), [], {}, "") or isinstance(default, bool) else f" (default {default})"
    return (help_text if help_text is not None else info.description or "") + shown


def build_parser() -> argparse.ArgumentParser:
    """Flags for ``LoadTestConfig``'s fields, as ``_GROUPS`` lists them."""
    p = argparse.ArgumentParser(
        prog="varigate loadtest",
        description=__doc__,
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for title, flags in _GROUPS:
        group = p.add_argument_group(title)
        for flag, field, options in flags:
            if field is None:
                group.add_argument(flag, **options)
            else:
                rest = {k: v for k, v in options.items() if k != "help"}
                group.add_argument(flag, dest=field, help=_field_help(field, options.get("help")), **rest)
    return p


def _metrics_url(value: str, url: str) -> str | None:
    if value == "none":
        return None
    if value != "auto":
        return value if "://" in value else f"http://{value}/metrics"
    from loadtest.hosts import host_of

    host = host_of(url)
    return f"http://{'[' + host + ']' if ':' in host else host}:8002/metrics"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from loadtest.config import LoadTestConfig
    from loadtest.report import format_text
    from loadtest.runner import dumps, run_sync

    options = vars(args)
    flags = {k: options.pop(k) for k in ("json", "fail_on_errors", "fail_on_mismatch")}
    options["parameters"] = dict(options.get("parameters", []))
    options["metrics_url"] = _metrics_url(options.get("metrics_url", "auto"), options["url"])
    try:
        cfg = LoadTestConfig(**options)
    except ValidationError as e:
        for err in e.errors():
            where = "--" + "-".join(str(x) for x in err["loc"]).replace("_", "-") if err["loc"] else "options"
            print(f"varigate loadtest: {where}: {err['msg']}", file=sys.stderr)
        return 2
    from aiohttp import ClientError
    from tritonclient.utils import InferenceServerException

    try:
        outcome = run_sync(cfg)
    except (ValueError, RuntimeError, OSError, ClientError, InferenceServerException) as e:
        print(f"varigate loadtest: {e}", file=sys.stderr)
        return 2
    print(dumps(outcome) if flags["json"] else format_text(outcome.summary))
    check = outcome.cross_check
    if check is not None and not flags["json"]:
        print(
            "  metrics cross-check: "
            + ("server counts agree" if check.agrees else "; ".join(check.disagreements))
        )
        for note in check.notes:
            print(f"  metrics note: {note}")
    elif cfg.metrics_url and check is None and not flags["json"]:
        print(f"  metrics cross-check skipped: {cfg.metrics_url} not readable")
    if outcome.files and not flags["json"]:
        print(f"  results in {cfg.out}: " + ", ".join(f.name for f in outcome.files))
    failed = (flags["fail_on_errors"] and outcome.summary.error_count > 0) or (
        flags["fail_on_mismatch"] and check is not None and not check.agrees
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
