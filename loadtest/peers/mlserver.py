"""Seldon MLServer as a peer: installed by the project (``scripts/peers/mlserver.sh``, a venv of its own) and
run on free loopback ports, serving variants of a varigate repository with ``mlserver_runtime``.

``MLServerProcess(repository, ["minilm.int8"], work_dir)`` writes an MLServer models directory under
``work_dir`` (``settings.json``; per model ``model-settings.json`` pointing at the variant's ``model.onnx``)
and starts ``mlserver start`` there; readiness is each model's ``/v2/models/<name>/ready``, polled.

Batching is taken from each model's config.pbtxt: ``max_batch_size`` and
``dynamic_batching.max_queue_delay_microseconds`` become MLServer's ``max_batch_size`` and
``max_batch_time``. They do not mean the same: MLServer's size counts *requests* (a batch of 8 requests of
4 rows is 32 rows, where Triton's 8 counts rows), and MLServer has no queue policy, priorities or preferred
sizes. A config without dynamic batching turns MLServer's batching off.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from loadtest.cpu import descendants, wait_gone
from loadtest.peers.install import run_installer
from loadtest.server import ROOT, free_port, wait_ready
from varigate.contract.layout import CONFIG_FILENAME, model_file

INSTALL_SCRIPT = ROOT / "scripts" / "peers" / "mlserver.sh"
RUNTIME = "loadtest.peers.mlserver_runtime.OnnxRuntimeModel"
# MLServer's own default: one inference worker process runs the model; the main process parses, batches and
# dispatches. With uvloop >= 0.22 that worker dies at start (the "default failed to start", which
# made it use 0); scripts/peers/mlserver.sh pins uvloop 0.21 and the default serves. 0 (the model in the
# main process, sharing its event loop) stays available for comparison.
DEFAULT_PARALLEL_WORKERS = 1


class MLServerPeerError(RuntimeError):
    """The install or the server failed; the message carries the script's or the server's output."""


def ensure_installed(timeout_s: float = 1200.0) -> Path:
    """Run the installer (a no-op after the first time) and return MLServer's venv; ``VARIGATE_PEERS_DIR``
    moves it (default ``<repo>/.peers``)."""
    venv = run_installer(INSTALL_SCRIPT, timeout_s, MLServerPeerError) / "venv"
    if not (venv / "bin" / "mlserver").is_file():
        raise MLServerPeerError(f"{INSTALL_SCRIPT} printed {venv.parent}, which has no venv/bin/mlserver")
    return venv


def read_config(model_dir: Path) -> Any:
    """The model's config.pbtxt as Triton's ``ModelConfig`` message."""
    return text_format.Parse((model_dir / CONFIG_FILENAME).read_text(), model_config_pb2.ModelConfig())


def batching(config: Any) -> tuple[int, float]:
    """``(max_batch_size, max_batch_time_s)`` for MLServer; ``(0, 0.0)`` (off) without dynamic batching."""
    if not config.HasField("dynamic_batching") or config.max_batch_size <= 1:
        return 0, 0.0
    return int(config.max_batch_size), config.dynamic_batching.max_queue_delay_microseconds / 1e6


def tensors(config: Any, field: str) -> list[dict[str, Any]]:
    """The config's inputs or outputs as MLServer metadata (served by ``/v2/models/<name>``), the batch
    dimension first as ``-1`` when the model batches."""
    batch = [-1] if config.max_batch_size > 0 else []
    found = []
    for t in getattr(config, field):
        short = model_config_pb2.DataType.Name(t.data_type).removeprefix("TYPE_")
        datatype = "BYTES" if short == "STRING" else short
        found.append({"name": t.name, "datatype": datatype, "shape": [*batch, *t.dims]})
    return found


def model_settings(name: str, model_dir: Path, intra_op_threads: int, allow_spinning: bool) -> dict[str, Any]:
    config = read_config(model_dir)
    max_batch_size, max_batch_time_s = batching(config)
    return {
        "name": name,
        "implementation": RUNTIME,
        "platform": config.platform,
        "inputs": tensors(config, "input"),
        "outputs": tensors(config, "output"),
        "max_batch_size": max_batch_size,
        "max_batch_time": max_batch_time_s,
        "parameters": {
            "uri": str(model_file(model_dir).resolve()),
            "extra": {"intra_op_threads": intra_op_threads, "allow_spinning": allow_spinning},
        },
    }


class MLServerProcess:
    """``mlserver start`` on free loopback ports, as ``loadtest.server.GatewayProcess`` runs the gateway."""

    def __init__(
        self,
        repository: Path,
        models: Sequence[str],
        work_dir: Path,
        *,
        intra_op_threads: int = 1,
        allow_spinning: bool = True,
        parallel_workers: int = DEFAULT_PARALLEL_WORKERS,
        start_timeout_s: float = 120.0,
        venv: Path | None = None,
    ) -> None:
        if not models:
            raise ValueError("MLServerProcess needs at least one model name")
        self.repository, self.models, self.work_dir = repository, tuple(models), work_dir
        self.intra_op_threads, self.allow_spinning = intra_op_threads, allow_spinning
        self.parallel_workers, self.start_timeout_s, self.venv = parallel_workers, start_timeout_s, venv
        self.models_dir, self.log_path = work_dir / "models", work_dir / "mlserver.log"
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s = 0.0  # seconds from start to every model ready

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def pids(self) -> tuple[int, ...]:
        """The main process and every live descendant (the inference workers), for CPU accounting."""
        return (self.pid, *descendants(self.pid))

    def write_models_dir(self) -> Path:
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        d = self.models_dir
        if d.exists():
            shutil.rmtree(d)  # MLServer loads every model-settings.json under it: none left from before
        d.mkdir(parents=True)
        server = {
            "host": "127.0.0.1",
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "metrics_port": self.metrics_port,
            "parallel_workers": self.parallel_workers,
            "debug": False,  # MLServer's default True writes an access log line per request
            "model_repository_root": str(d),
            "metrics_dir": str(self.work_dir / "metrics"),
            "environments_dir": str(self.work_dir / "envs"),
        }
        (d / "settings.json").write_text(json.dumps(server, indent=2))
        for name in self.models:
            source = self.repository / name
            if not model_file(source).is_file():
                raise FileNotFoundError(f"model {name}: no {model_file(source)} in {self.repository}")
            settings = model_settings(name, source, self.intra_op_threads, self.allow_spinning)
            (d / name).mkdir(exist_ok=True)
            (d / name / "model-settings.json").write_text(json.dumps(settings, indent=2))
        return d

    def start(self) -> Self:
        venv = self.venv or ensure_installed()
        models_dir = self.write_models_dir()
        # none of our Python settings (nor MLSERVER_* overrides); the repository root on the path for the
        # runtime (loadtest/peers itself would let its mlserver.py shadow the mlserver package)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLSERVER_"))}
        env.update({"PYTHONPATH": str(ROOT), "VIRTUAL_ENV": str(venv)})
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(venv / "bin" / "mlserver"), "start", str(models_dir)],
                cwd=self.work_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its workers in its process group, so kill() reaches them
            )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        self.ready_s = time.monotonic() - started
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        urls = [f"http://{self.http_url}/v2/models/{m}/ready" for m in self.models]
        wait_ready(self.proc, urls, self.start_timeout_s, "mlserver", self.log, MLServerPeerError)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (MLServer stops its workers), then its exit status once every process it had has exited;
        what outlives ``timeout_s`` is killed (-9 when the main process had to be)."""
        if self.proc is None:
            return 0
        others = descendants(self.proc.pid)  # its workers: waited for too
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9
        if not wait_gone(others, timeout_s):
            self._kill_group()
            wait_gone(others, 5.0)
        return status

    def kill(self) -> None:
        if self.proc is None:
            return
        others = descendants(self.proc.pid)
        self._kill_group()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        wait_gone(others, 5.0)

    def _kill_group(self) -> None:
        """Whatever is left of its process group (an orphaned worker) is killed."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
