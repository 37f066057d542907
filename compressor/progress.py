"""Live progress of the compressor's long steps: a tqdm bar on a terminal, parseable lines otherwise.

    with progress.task("profile minilm.int8", total=6, unit="batch size") as t:
        for bs in sizes:
            ...
            t.update(bs=bs, p50_ms=3.2)    # advance one unit, show these fields
        t.set(loss=0.0123)                 # fields only

``VARIGATE_PROGRESS`` chooses the display: ``auto`` (the default: a bar when stderr is a terminal, lines
when it is not), ``bar``, ``lines`` or ``off``. ``VARIGATE_LOG_PREFIX`` (e.g. ``"[build] "``) goes in front
of every line and of each bar's description.

Lines (stderr, flushed): one when the task starts, then at most one every ``VARIGATE_PROGRESS_SECS``
seconds (default 5), written from ``update()`` / ``set()`` when one is due, and a final one at exit::

    [build] progress task="distil minilm.pruned-structured" done=120 total=2500 unit=step pct=4.8 \
elapsed_s=24.1 eta_s=476.0 rate=5.0 state=running loss=0.0123

(one line; wrapped here). The keys are fixed and in this order: ``task`` (always quoted), ``done``,
``total``, ``unit``, ``pct``, ``elapsed_s``, ``eta_s`` (``nan`` before the first unit), ``rate`` (units
per second), ``state`` (``running``; ``done`` on a normal exit, ``stopped`` when the block raised); then
the task's own fields in the order they were first set. A value holding a space, a quote, ``=`` or nothing
is double-quoted with ``\\"`` and ``\\\\`` escaped. The fixed numbers have one decimal; the task's own
floats four significant digits. ``parse(line)`` reads a line (prefix or not) back into its key=value
strings.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Self, TextIO

from tqdm import tqdm

Value = float | int | str
MODES = ("auto", "bar", "lines", "off")
FIXED = ("task", "done", "total", "unit", "pct", "elapsed_s", "eta_s", "rate", "state")
DEFAULT_SECS = 5.0
BAR_POSTFIX_SECS = 0.2  # how often a bar's shown fields are refreshed (tqdm redraws on its own clock)
_MARK = 'progress task="'
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PAIR = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?=\s|\Z)')
_NEEDS_QUOTES = re.compile(r'[\s"=\\]')
_open_bars = 0  # bars being drawn now: write() goes through tqdm.write while any is
_silenced = 0  # silenced() blocks open now


def mode(stream: TextIO | None = None) -> str:
    """The display VARIGATE_PROGRESS asks for, resolved against ``stream`` (stderr): bar, lines or off."""
    raw = os.environ.get("VARIGATE_PROGRESS", "").strip().lower() or "auto"
    if raw not in MODES:
        raise ValueError(f"VARIGATE_PROGRESS={raw!r}: expected one of {', '.join(MODES)}")
    if raw != "auto":
        return raw
    return "bar" if _isatty(stream if stream is not None else sys.stderr) else "lines"


def interval() -> float:
    """Seconds between two progress lines (VARIGATE_PROGRESS_SECS, default 5)."""
    raw = os.environ.get("VARIGATE_PROGRESS_SECS", "").strip()
    try:
        secs = float(raw) if raw else DEFAULT_SECS
    except ValueError:
        raise ValueError(f"VARIGATE_PROGRESS_SECS={raw!r} is not a number of seconds") from None
    if not secs >= 0:
        raise ValueError(f"VARIGATE_PROGRESS_SECS={raw!r} must be >= 0")
    return secs


def prefix() -> str:
    return os.environ.get("VARIGATE_LOG_PREFIX", "")


def task(name: str, total: int, unit: str = "step") -> Task:
    """A progress display for one long step, used as a context manager (settings from the environment)."""
    return Task(name, total, unit, display="off" if _silenced else None)


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Within it, ``task()`` shows nothing (``varigate compress --quiet``)."""
    global _silenced
    _silenced += 1
    try:
        yield
    finally:
        _silenced -= 1


def write(message: str) -> None:
    """A log line on stderr with the prefix, drawn above any open bar instead of through it."""
    line = prefix() + message
    if _open_bars:
        tqdm.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


class Task:
    """One long step's progress; ``task()`` builds it from the environment, tests pass the options."""

    def __init__(
        self,
        name: str,
        total: int,
        unit: str = "step",
        *,
        display: str | None = None,
        secs: float | None = None,
        line_prefix: str | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.total, self.unit = name, int(total), unit
        self.done = 0
        self.fields: dict[str, Value] = {}
        self._stream, self._clock = stream, clock
        self._display = display if display is not None else mode(stream)
        if self._display not in MODES[1:]:
            raise ValueError(f"progress display {self._display!r}: expected bar, lines or off")
        self._secs = interval() if secs is None else secs
        self._prefix = prefix() if line_prefix is None else line_prefix
        self._start = self._due = clock()
        self._bar: tqdm[Any] | None = None
        self._closed = False

    def __enter__(self) -> Self:
        self._start = self._clock()
        if self._display == "bar":
            global _open_bars
            self._bar = tqdm(
                total=self.total,
                desc=self._prefix + self.name,
                unit=self.unit,
                file=self._out(),
                dynamic_ncols=True,
                mininterval=BAR_POSTFIX_SECS,
            )
            _open_bars += 1
            self._due = self._start  # the first fields show at once, then every BAR_POSTFIX_SECS
        elif self._display == "lines":
            self._emit(self._start, "running")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close("done" if kind is None else "stopped")

    def update(self, n: int = 1, **fields: Value) -> None:
        """Advance by ``n`` units and set the shown ``fields``; a line is written only when one is due."""
        self.done += n
        if fields:
            self._set(fields)
        if self._bar is not None:
            if fields and self._clock() >= self._due:
                self._refresh_postfix()
            self._bar.update(n)
        elif self._display == "lines":
            now = self._clock()
            if now >= self._due:
                self._emit(now, "running")

    def set(self, **fields: Value) -> None:
        """Set shown fields without advancing (e.g. a validation score between steps)."""
        self.update(0, **fields)

    def close(self, state: str = "done") -> None:
        """Write the final line (or leave the bar's final state); later updates change nothing shown."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            global _open_bars
            self._bar.set_postfix_str(self._postfix(state), refresh=False)
            self._bar.close()
            self._bar = None
            _open_bars -= 1
        elif self._display == "lines":
            self._emit(self._clock(), state)
        self._display = "off"

    def line(self, now: float, state: str = "running") -> str:
        """The progress line for the task's current counts at time ``now`` (without the prefix)."""
        elapsed = max(0.0, now - self._start)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = max(0, self.total - self.done) / rate if rate > 0 else math.nan
        pct = 100.0 * self.done / self.total if self.total > 0 else 100.0
        fixed = (
            f"progress task={_quote(self.name, force=True)} done={self.done} total={self.total} "
            f"unit={_quote(self.unit)} pct={pct:.1f} elapsed_s={elapsed:.1f} eta_s={eta:.1f} "
            f"rate={rate:.1f} state={state}"
        )
        own = "".join(f" {k}={_quote(_format(v))}" for k, v in self.fields.items())
        return fixed + own

    def _set(self, fields: dict[str, Value]) -> None:
        for key in fields:
            if key not in self.fields and (key in FIXED or not _KEY.match(key)):
                raise ValueError(f"progress field {key!r}: not an identifier, or one of the fixed {FIXED}")
        self.fields.update(fields)

    def _emit(self, now: float, state: str) -> None:
        out = self._out()
        out.write(self._prefix + self.line(now, state) + "\n")
        out.flush()
        self._due = now + self._secs

    def _refresh_postfix(self) -> None:
        assert self._bar is not None
        self._bar.set_postfix_str(self._postfix(None), refresh=False)
        self._due = self._clock() + BAR_POSTFIX_SECS

    def _postfix(self, state: str | None) -> str:
        shown = [f"{k}={_format(v)}" for k, v in self.fields.items()]
        return ", ".join([*shown, *([state] if state == "stopped" else [])])

    def _out(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr


def parse(line: str) -> dict[str, str] | None:
    """The key=value fields of a progress line (any prefix before ``progress``); None for other lines."""
    start = line.find(_MARK)
    if start < 0:
        return None
    rest = line[start + len("progress") :].rstrip("\r\n")
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(rest.rstrip()):
        m = _PAIR.match(rest, pos)
        if m is None:
            return None
        key, value = m.group(1), m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        fields[key] = value
        pos = m.end()
    return fields if all(k in fields for k in FIXED) else None


def _format(value: Value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | numbers.Integral):
        return str(value)
    return format(float(value), ".4g")


def _quote(value: str, force: bool = False) -> str:
    if force or not value or _NEEDS_QUOTES.search(value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
