"""py-spy's samples of a real process, summed per thread and per frame (``peers_profile.summarize``): the
numbers the peers section prints about where the gateway's time goes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from loadtest.benchmarks.peers_profile import py_spy, summarize

BUSY = textwrap.dedent(
    """
    import threading, time
    def crunch_in_worker():
        while True:
            sum(i * i for i in range(10_000))
    def crunch_on_main():
        while True:
            sum(i * i for i in range(10_000))
    threading.Thread(target=crunch_in_worker, name="worker_1", daemon=True).start()
    print("ready", flush=True)
    crunch_on_main()
    """
)


def test_py_spy_samples_are_summed_by_thread_and_frame(tmp_path: Path) -> None:
    tool = py_spy()
    assert tool is not None, "py-spy is a test dependency (pyproject.toml)"
    busy = subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.PIPE, text=True)
    try:
        assert busy.stdout is not None and busy.stdout.readline().strip() == "ready"
        out = tmp_path / "stacks.txt"
        done = subprocess.run(
            [tool, "record", "-p", str(busy.pid), "-d", "2", "-r", "100", "--format", "raw", "-o", str(out),
             "--threads", "--nonblocking"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    finally:
        busy.kill()
        busy.communicate()
    samples = summarize(out.read_text(), top=5)
    assert samples.samples > 100  # two busy threads for 2 s at 100 Hz
    assert set(samples.threads) >= {"MainThread", "worker_*"}  # numbered workers folded into one name
    assert samples.main_self[0][0].startswith("crunch_on_main")  # its <genexpr>, or itself
    names = [frame for frame, _ in samples.main_inclusive]
    assert "crunch_on_main (<string>)" in names and "crunch_in_worker (<string>)" not in names
    started = time.monotonic()
    assert summarize("garbage without counts\n").samples == 0 and time.monotonic() - started < 1
