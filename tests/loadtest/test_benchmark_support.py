"""The benchmark sections' building blocks (the benchmarks themselves are scripts, not tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from loadtest.benchmarks import common
from loadtest.benchmarks.raw import RawModel
from loadtest.clients import make_driver
from loadtest.engine import ClosedLoop
from loadtest.server import GatewayProcess
from tests.fixtures.tinyrepo import build_tiny_repository
from tests.loadtest.conftest import tiny_payloads


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse((path / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def test_serving_copy_edits_batching_and_links_the_model(tmp_path: Path) -> None:
    src = build_tiny_repository(tmp_path / "src")
    delay = common.serving_copy(src, tmp_path / "delay0", ["tiny.fp32"], common.queue_delay(0))
    assert [p.name for p in delay.iterdir()] == ["tiny.fp32"]
    cfg = _config(delay / "tiny.fp32")
    assert cfg.HasField("dynamic_batching") and cfg.dynamic_batching.max_queue_delay_microseconds == 0
    assert cfg.max_batch_size == _config(src / "tiny.fp32").max_batch_size
    model = delay / "tiny.fp32" / "1" / "model.onnx"
    assert model.is_symlink() and model.resolve() == (src / "tiny.fp32" / "1" / "model.onnx").resolve()
    assert (delay / "tiny.fp32" / "varigate_card.json").is_file()
    off = common.serving_copy(src, tmp_path / "off", ["tiny.fp32"], common.no_batching)
    assert not _config(off / "tiny.fp32").HasField("dynamic_batching")


def test_ensure_variants_leaves_a_built_repository_alone(tmp_path: Path) -> None:
    repo = build_tiny_repository(tmp_path / "repo")
    before = _files(repo)
    common.ensure_variants(repo, "tiny", ["fp32", "int8"])  # present: nothing is built (no torch needed)
    assert _files(repo) == before and (repo / "tiny.int8" / "1" / "model.onnx").is_file()
    # a missing variant is built by the compressor, which knows no model "tiny": the build fails, loudly
    with pytest.raises(subprocess.CalledProcessError) as failed:
        common.ensure_variants(repo, "tiny", ["fp32", "fp16"])
    assert failed.value.cmd[-2:] == ["--variants", "fp16"] and failed.value.returncode == 2
    assert _files(repo) == before


def test_raw_windows_measure_each_batch(tmp_path: Path) -> None:
    repo = build_tiny_repository(tmp_path / "repo")
    raw = RawModel(repo / "tiny.fp32" / "1" / "model.onnx", tiny_payloads(16), (1, 4))
    w = raw.window(4, 0.05)
    assert w.batch == 4 and len(w.latencies_ms) >= 3 and w.throughput_per_s > 0
    assert w.p50_ms <= w.p99_ms
    with pytest.raises(ValueError, match="more payload rows"):
        RawModel(repo / "tiny.fp32" / "1" / "model.onnx", tiny_payloads(2), (8,))


async def test_a_monitored_window_reports_cpu_and_batches(tiny_gateway: GatewayProcess) -> None:
    driver = make_driver("grpc", tiny_gateway.grpc, "tiny.fp32", tiny_payloads(), timeout_s=10)
    try:
        m = await common.window(
            driver,
            ClosedLoop(8, 0.5),
            tiny_gateway.pid,
            warmup_s=0.1,
            metrics_url=tiny_gateway.metrics_url,
            model="tiny.fp32",
        )
    finally:
        await driver.close()
    assert m.summary.errors == {} and m.check is not None and m.check.agrees
    assert m.server_cores > 0 and m.generator_cores > 0
    assert m.mean_batch_rows is not None and m.mean_batch_rows >= 1.0
    assert m.window.seconds > 0.5
