"""Debian's real Prometheus for tests/ops: ``peer_binaries()`` installs it once (scripts/peers/prometheus.sh)
and names promtool and prometheus; ``PrometheusServer`` runs prometheus on a free loopback port with its own
storage, scraping given targets every second and evaluating ``deploy/prometheus/rules.yml`` every second."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from loadtest.server import ROOT, free_port, wait_ready
from varigate.ops.promql import Prometheus

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "rules_test.yml"
START_TIMEOUT_S = 30.0


@functools.cache
def peer_binaries() -> tuple[Path, Path]:
    """(promtool, prometheus), installed by scripts/peers/prometheus.sh when missing."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "peers" / "prometheus.sh")], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/peers/prometheus.sh failed ({done.returncode}):\n{done.stderr[-3000:]}")
    promtool, prometheus = done.stdout.split()[-2:]
    return Path(promtool), Path(prometheus)


class PrometheusServer:
    def __init__(self, workdir: Path, targets: Sequence[str], rules: Path = RULES, job: str = "varigate"):
        self.workdir, self.targets, self.rules, self.job = workdir, tuple(targets), rules, job
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> Prometheus:
        return Prometheus(self.url)

    def log(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        targets = ", ".join(f'"{t}"' for t in self.targets)
        config = self.workdir / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{self.rules}']\n"
            f"scrape_configs:\n  - job_name: {self.job}\n    static_configs: [{{targets: [{targets}]}}]\n"
        )
        self.port = free_port()
        command = [
            str(peer_binaries()[1]),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]
        with (self.workdir / "prometheus.log").open("wb") as log:
            self.proc = subprocess.Popen(command, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(self.proc, [f"{self.url}/-/ready"], START_TIMEOUT_S, "prometheus", self.log)
        except BaseException:
            self.kill()
            raise
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()
