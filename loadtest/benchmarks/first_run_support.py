"""The parts of the first-run measurement (``loadtest.benchmarks.first_run``) that need no clone: what the
run's output lines mean, where pip took torch from, the processes a run started (found by a tag in their
environment, so a process that left the run's process group or session is still found), their CPU, and a
stop of the whole run by SIGINT to its process group that reports what was left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.cpu import Window

TAG_ENV = "FIRST_RUN_PROBE"  # in the environment of every process the measured run starts
_HZ = os.sysconf("SC_CLK_TCK")

# milestone -> the line of scripts/run.sh's output that marks it ("[build] " is the background build's)
LINE_MILESTONES = (
    ("venv ready", re.compile(r"^\[run\] building the quick variants")),
    ("quick variants built", re.compile(r"^\[run\] gateway pid \d+")),
    ("gateway ready line", re.compile(r"varigate serving .*: HTTP \d+")),
    ("background build finished", re.compile(r"^\[run\] background build finished")),
    ("background build stopped", re.compile(r"^\[run\] background build stopped")),
)
_BUILDING = re.compile(r"^(?:\[build\] )?(?P<model>[\w-]+)\.(?P<variant>[\w-]+): building$")  # prefix or not
_GATEWAY_PID = re.compile(r"^\[run\] gateway pid (?P<pid>\d+)")
_WHEEL = re.compile(r"(?P<how>Processing|Downloading|Using cached)\s+(?P<what>\S+\.whl)")


@dataclass
class Timeline:
    """Seconds from the start at which each milestone was first seen; fed line by line."""

    at: dict[str, float] = field(default_factory=dict)
    detail: dict[str, str] = field(default_factory=dict)
    gateway_pid: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def mark(self, name: str, t_s: float, detail: str = "") -> bool:
        """Record ``name`` at ``t_s`` unless already seen; True when it is new (safe across threads: the
        output reader and the probe both mark)."""
        with self._lock:
            if name in self.at:
                return False
            self.at[name] = t_s
            if detail:
                self.detail[name] = detail
            return True

    def feed(self, t_s: float, line: str) -> list[str]:
        """The milestones this output line marks for the first time."""
        text = line.rstrip("\n")
        new = [n for n, pattern in LINE_MILESTONES if pattern.search(text) and self.mark(n, t_s, text[:160])]
        if (m := _GATEWAY_PID.search(text)) and self.gateway_pid is None:
            self.gateway_pid = int(m.group("pid"))
        if (m := _BUILDING.search(text)) and "quick variants built" in self.at:  # the background build
            name = f"build started: {m.group('model')}.{m.group('variant')}"
            if self.mark(name, t_s):
                new.append(name)
        return new


@dataclass(frozen=True, slots=True)
class Wheels:
    """Where pip took the wheels it installed, from its log (``PIP_LOG``)."""

    torch: str  # "local file /path/torch-....whl", "downloaded torch-....whl", or "not installed by pip"
    local_files: int
    downloaded: int
    cached: int


def wheel_origins(pip_log: str) -> Wheels:
    local = downloaded = cached = 0
    torch = "not installed by pip in this run"
    for m in _WHEEL.finditer(pip_log):
        how, what = m.group("how"), m.group("what")
        name = what.rsplit("/", 1)[-1]
        origin = f"local file {what}" if how == "Processing" else f"{how.lower()} {name}"
        local += how == "Processing"
        downloaded += how == "Downloading"
        cached += how == "Using cached"
        if name.startswith("torch-"):
            torch = origin
    return Wheels(torch, local, downloaded, cached)


def tagged(tag: str) -> dict[int, str]:
    """pid -> command line of every process whose environment carries ``TAG_ENV=tag``."""
    needle = f"{TAG_ENV}={tag}".encode()
    found: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0") and _running(int(d.name)):
                found[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
        except OSError:
            continue  # gone, or not ours to read
    return found


def _stat(pid: int | str) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree_jiffies(pids: Iterable[int]) -> int:
    """utime + stime + the reaped children's (cutime + cstime) of each process: a child that exits and is
    waited for moves into its parent's count, so the sum over a run's live processes keeps its dead."""
    total = 0
    for pid in pids:
        try:
            total += sum(int(x) for x in _stat(pid)[11:15])
        except (OSError, IndexError, ValueError):
            pass
    return total


def _machine() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies over all CPUs."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    steal = f[7] if len(f) > 7 else 0
    return f[0] + f[1] + f[2] + f[5] + f[6], steal, sum(f[:8])


@dataclass
class CpuLedger:
    """Windows of the machine's steal and other processes' CPU while the run is measured; 'own' is the
    run's tagged processes and this process (with what each has waited for)."""

    windows: list[Window] = field(default_factory=list)
    own_core_s: float = 0.0
    _last: tuple[float, int, tuple[int, int, int]] | None = None

    def sample(self, pids: Iterable[int]) -> None:
        now, own, machine = time.monotonic(), tree_jiffies([os.getpid(), *pids]), _machine()
        if self._last is not None:
            t0, own0, (busy0, steal0, total0) = self._last
            dt, d_own = max(now - t0, 1e-9), max(own - own0, 0)
            busy, steal, total = machine
            other = max(0, (busy - busy0) - d_own) / _HZ / dt
            self.windows.append(Window(dt, (steal - steal0) / max(total - total0, 1), other))
            self.own_core_s += d_own / _HZ
        self._last = (now, own, machine)

    def summary(self) -> dict[str, float]:
        seconds = sum(w.seconds for w in self.windows) or 1e-9
        return {
            "seconds": seconds,
            "steal": sum(w.steal_fraction * w.seconds for w in self.windows) / seconds,
            "other_cores": sum(w.other_cores * w.seconds for w in self.windows) / seconds,
            "other_cores_max": max((w.other_cores for w in self.windows), default=0.0),
            "own_cores": self.own_core_s / seconds,
            "windows": len(self.windows),
            "disturbed": sum(w.disturbed() for w in self.windows),
        }


@dataclass(frozen=True, slots=True)
class Stopped:
    exit_code: int | None  # None: it did not exit in time (then killed)
    seconds: float
    strays: dict[int, str]  # tagged processes still alive after the grace period (then killed)


def start_group(argv: list[str], cwd: Path | None, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``argv`` leading a process group (and session) of its own, output piped, SIGINT deliverable: a
    measurement started in the background (nohup, ``&``) has SIGINT ignored, its children would inherit
    that, and bash cannot trap a signal ignored on entry (a user's terminal delivers it)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # reset to the default in the child
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_group(
    proc: subprocess.Popen[bytes], tag: str, timeout_s: float = 120.0, grace_s: float = 10.0
) -> Stopped:
    """SIGINT to the process group ``proc`` leads (what Ctrl-C in a terminal sends), wait for it, then
    for every tagged process to be gone; what is left after ``grace_s`` is reported and killed."""
    t0 = time.monotonic()
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    try:
        code: int | None = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        code = None
    seconds = time.monotonic() - t0
    deadline = time.monotonic() + grace_s
    left = tagged(tag)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)  # polling for exits, not a guess at how long they take
        left = tagged(tag)
    _kill(left)
    if code is None:
        proc.kill()
        proc.wait()
    return Stopped(code, seconds, left)


def _kill(pids: dict[int, str], wait_s: float = 5.0) -> None:
    """SIGKILL each, then wait (bounded) until each is gone (reaped by whoever adopted it)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait_s
    while any(_running(pid) for pid in pids):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)


def _running(pid: int) -> bool:
    """Not gone and not a zombie."""
    try:
        return _stat(pid)[0] != "Z"
    except (OSError, IndexError):
        return False


@dataclass
class Measurement:
    commit: str
    subject: str
    quick: bool
    clone_s: float
    ended: str  # why the watch ended
    timeline: Timeline
    wheels: Wheels
    cpu: dict[str, float]
    stopped: Stopped
    build_report: dict[str, str] = field(default_factory=dict)  # minilm variant -> status
    stop_log: list[str] = field(default_factory=list)  # the run's lines from its stop on
