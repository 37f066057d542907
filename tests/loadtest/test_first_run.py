"""The first-run measurement's own parts (``loadtest.benchmarks.first_run*``), without its 45 minutes: its
line patterns match what scripts/run.sh and the real gateway print, the probe reads a real gateway, the
clone and its environment share nothing with this checkout, the CPU ledger keeps reaped children, and the
process-group stop leaves nothing behind (and names what would be)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtest.benchmarks import first_run, first_run_report
from loadtest.benchmarks.first_run_probe import HEAVY, Probe, finished
from loadtest.benchmarks.first_run_support import (
    _HZ,
    TAG_ENV,
    CpuLedger,
    Measurement,
    Stopped,
    Timeline,
    start_group,
    stop_group,
    tagged,
    tree_jiffies,
    wheel_origins,
)
from loadtest.server import ROOT, GatewayProcess
from tests.fixtures.tinyrepo import build_tiny_repository


def test_every_milestone_line_is_one_that_run_sh_prints() -> None:
    script = (ROOT / "scripts" / "run.sh").read_text()
    echoed = [m.group(1) for m in re.finditer(r'echo "(\[run\][^"]*)"', script)]
    timeline = Timeline()
    for i, line in enumerate(echoed):
        timeline.feed(float(i), re.sub(r"\$\{?\w+\}?", "4242", line))  # as the shell expands it
    assert set(timeline.at) == {
        "venv ready",
        "quick variants built",
        "background build finished",
        "background build stopped",
    }
    assert timeline.gateway_pid == 4242


def test_lines_mark_each_milestone_once_at_its_first_time() -> None:
    t = Timeline()
    assert t.feed(1.0, "[run] building the quick variants into model_repository (built ones are skipped)\n")
    assert t.feed(2.0, "minilm.int8: building\n") == []  # the quick build, in the foreground
    assert t.feed(3.0, "[run] gateway pid 4242; heavy variants building in the background (pid 4243)") == [
        "quick variants built"
    ]
    assert t.gateway_pid == 4242
    assert t.feed(4.0, "[build] minilm.fp16: building") == ["build started: minilm.fp16"]
    assert t.feed(5.0, "minilm.pruned: building") == ["build started: minilm.pruned"]  # no prefix: still seen
    assert t.feed(6.0, "[build] minilm.fp16: building") == []
    assert t.at["build started: minilm.fp16"] == 4.0
    assert t.feed(7.0, 'progress task="profile fp16" done=2 total=2') == []


def test_the_ready_line_and_the_probe_against_a_real_gateway(tmp_path: Path) -> None:
    repo = build_tiny_repository(tmp_path / "repo")
    with GatewayProcess(repo, tmp_path / "gw.log", ("--log-level", "info")) as gw:
        probe = Probe(gw.grpc)
        try:
            assert probe.ready()
            states = probe.states()
            assert states["tiny.fp32"] == "READY" and states["tiny.int8"] == "READY"
            assert probe.infer("no-such-model") is None
        finally:
            probe.close()
        t = Timeline()
        marked = [n for i, line in enumerate(gw.log().splitlines()) for n in t.feed(float(i), line)]
    assert marked == ["gateway ready line"]
    assert f"HTTP {gw.http_port}" in t.detail["gateway ready line"]
    stopped = Probe("127.0.0.1:9")  # nothing listens on the discard port of loopback
    try:
        assert not stopped.ready() and stopped.states() == {}
    finally:
        stopped.close()


def test_where_pip_took_torch_from() -> None:
    log = "\n".join(
        [
            "06:30:04,643 Processing /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
            "2026-12-02T06:30:06,216 Processing /opt/pypi/files/tqdm-4.70.1-py3-none-any.whl",
            "2026-12-02T06:30:07,000 Downloading https://files.example/numpy-2.0.0-cp311-cp311-linux_x86_64.whl",
            "2026-12-02T06:30:08,000 Using cached onnx-1.17.0-cp311-cp311-linux_x86_64.whl",
        ]
    )
    w = wheel_origins(log)
    assert w.torch == "local file /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert (w.local_files, w.downloaded, w.cached) == (2, 1, 1)
    downloaded = wheel_origins("Downloading https://files.example/a/torch-2.13.0-cp311-none-linux.whl")
    assert downloaded.torch == "downloading torch-2.13.0-cp311-none-linux.whl"  # the file, not the host
    assert wheel_origins("").torch == "not installed by pip in this run"


def test_the_clone_and_its_environment_share_nothing_with_this_checkout(tmp_path: Path) -> None:
    sha, subject = first_run.clone("HEAD", tmp_path / "clone")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    assert sha == head.strip() and subject
    assert not (tmp_path / "clone" / ".venv").exists()
    assert [p.name for p in (tmp_path / "clone" / "model_repository").iterdir()] == ["README.md"]
    base = {
        "PATH": f"{ROOT}/.venv/bin{os.pathsep}/usr/bin",
        "VARIGATE_REPOSITORY": str(ROOT / "model_repository"),
        "VIRTUAL_ENV": str(ROOT / ".venv"),
        "PIP_CACHE_DIR": "/root/.cache/pip",
        "PIP_FIND_LINKS": "/opt/wheels",
        "HOME": "/root",
    }
    env = first_run.fresh_env(tmp_path, "t", base)
    assert env["PATH"] == "/usr/bin" and "VIRTUAL_ENV" not in env and "VARIGATE_REPOSITORY" not in env
    assert env["PIP_FIND_LINKS"] == "/opt/wheels"  # the machine's pip configuration stays
    for key in ("PIP_CACHE_DIR", "XDG_CACHE_HOME", "VARIGATE_CACHE_DIR", "HF_HOME", "PIP_LOG"):
        assert Path(env[key]).is_relative_to(tmp_path), key
    assert env[TAG_ENV] == "t"


def test_the_ledger_keeps_the_cpu_of_children_that_exited(tmp_path: Path) -> None:
    before = tree_jiffies([os.getpid()])
    child = subprocess.Popen([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"])
    _, _, usage = os.wait4(child.pid, 0)
    child.returncode = 0
    spent = int((usage.ru_utime + usage.ru_stime) * _HZ)
    assert spent > 0
    assert tree_jiffies([os.getpid()]) - before >= spent - 1  # reaped: now in this process's cutime
    ledger = CpuLedger()
    ledger.sample([])
    ledger.sample([])
    summary = ledger.summary()
    assert summary["windows"] == 1 and 0.0 <= summary["steal"] <= 1.0 and summary["other_cores"] >= 0.0


# A run.sh in miniature: one child in the process group (which, started with &, ignores SIGINT as in any
# non-interactive shell) and one in a session of its own (setsid, as the background build), both tagged.
TREE = """
sleep 300 & A=$!
setsid sleep 301 & B=$!
trap '{on_int}; exit 130' INT
echo started
wait
"""


@pytest.fixture
def start_tree() -> Iterator[Callable[[str], tuple[subprocess.Popen[bytes], str]]]:
    """``start(on_int)``: the tree running, its trap set and both children exec'd; (process, tag). Whatever
    a failed test leaves of it is killed afterwards."""
    tags: list[str] = []

    def start(on_int: str) -> tuple[subprocess.Popen[bytes], str]:
        tag = f"tree-{os.getpid()}-{len(tags)}"
        tags.append(tag)
        proc = start_group(["bash", "-c", TREE.format(on_int=on_int)], None, {**os.environ, TAG_ENV: tag})
        assert proc.stdout is not None and proc.stdout.readline() == b"started\n"  # its trap is set
        proc.stdout.close()
        deadline = time.monotonic() + 30
        while not {"sleep 300", "sleep 301"} <= {c.strip() for c in tagged(tag).values()}:
            assert time.monotonic() < deadline, tagged(tag)  # exec'd: a SIGINT before that kills them
            time.sleep(0.01)
        return proc, tag

    yield start
    for tag in tags:
        for pid in tagged(tag):
            os.kill(pid, signal.SIGKILL)


def test_the_process_group_stop_leaves_nothing_behind(start_tree: Any) -> None:
    proc, tag = start_tree('kill -TERM "$A" "$B"; wait')
    assert len(tagged(tag)) == 3  # bash and both sleeps, found by their environment
    stopped = stop_group(proc, tag, timeout_s=30, grace_s=5)
    assert stopped == Stopped(130, stopped.seconds, {})
    assert tagged(tag) == {}


def test_the_stop_reaches_a_run_started_from_a_background_job(start_tree: Any) -> None:
    """Run under ``nohup ... &`` the measurement has SIGINT ignored; the run it starts must not inherit
    that (bash could not trap it, and run.sh would never stop its build)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc, tag = start_tree('kill -TERM "$A" "$B"; wait')
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stop_group(proc, tag, timeout_s=30, grace_s=5).exit_code == 130


def test_a_process_the_stop_missed_is_named_and_killed(start_tree: Any) -> None:
    proc, tag = start_tree('kill -TERM "$A"')  # forgets the one in its own session
    stopped = stop_group(proc, tag, timeout_s=30, grace_s=1)
    assert stopped.exit_code == 130
    assert [cmd.strip() for cmd in stopped.strays.values()] == ["sleep 301"]
    assert tagged(tag) == {}  # killed after it was reported


def _measurement(quick: bool, at: dict[str, float], report: dict[str, str], code: int = 130) -> Measurement:
    return Measurement(
        commit="0" * 40,
        subject="a commit",
        quick=quick,
        clone_s=0.1,
        ended="test",
        timeline=Timeline(at=dict(at)),
        wheels=wheel_origins(""),
        cpu=CpuLedger().summary(),
        stopped=Stopped(code, 1.0, {}),
        build_report=report,
    )


def test_the_section_says_whether_the_target_was_met() -> None:
    quick = _measurement(True, {"venv ready": 100.0, "first inference": 300.0}, {})
    text = first_run_report.render(quick)
    assert "**met** (300.0 s (5:00))" in text and "Quick mode" in text and first_run_report.clean(quick)
    assert text.index("| venv ready |") < text.index("| first inference |")
    late = _measurement(True, {"first inference": 400.0}, {})
    assert "**not met**" in first_run_report.render(late) and not first_run_report.clean(late)
    assert not first_run_report.clean(_measurement(True, {"first inference": 300.0}, {}, code=0))
    built = {v: "built" for v in HEAVY}
    served = {f"served: minilm.{v}": 900.0 for v in HEAVY}
    full = _measurement(
        False, {"first inference": 300.0, "background build finished": 2000.0, **served}, built
    )
    assert first_run_report.clean(full) and "served without a restart: 4 of 4" in first_run_report.render(
        full
    )
    missing = dict(full.timeline.at)
    del missing["served: minilm.fp16"]
    assert not first_run_report.clean(_measurement(False, missing, built))


@pytest.mark.parametrize(
    ("at", "report", "t_s", "done"),
    [
        ({}, {}, 10.0, False),  # the build has not ended
        ({"background build finished": 5.0}, {"fp16": "built"}, 10.0, False),  # fp16 written, not yet served
        ({"background build finished": 5.0, "served: minilm.fp16": 9.0}, {"fp16": "built"}, 10.0, True),
        ({"background build stopped": 5.0}, {"fp16": "failed"}, 10.0, True),  # failed its gate: not awaited
        ({"background build finished": 5.0}, {"fp16": "built"}, 100.0, True),  # long past: give up
    ],
)
def test_the_full_mode_ends_when_the_build_has_and_its_variants_are_served(
    at: dict[str, float], report: dict[str, str], t_s: float, done: bool
) -> None:
    assert finished(Timeline(at=dict(at)), t_s, lambda: report) is done
