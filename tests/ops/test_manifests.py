"""What ships in deploy/ validates offline: the kustomize build (``kubectl kustomize``) against the
Kubernetes schemas ``kubernetes-validate`` ships, the kustomization listing exactly the manifests there, the
Deployment's probes and grace period against the gateway's drain, the HPA against the prometheus-adapter
rule, the compose file (``docker-compose config``), and the Dockerfiles (``hadolint``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.settings import Settings
from loadtest.server import ROOT

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent
PRESTOP_S = 5


def _run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=120, cwd=ROOT)


def _built(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:  # validate the files as they are (kustomize adds only namespace and labels)
        docs = [d for f in sorted(K8S.glob("*.yaml")) if f.name != "kustomization.yaml"
                for d in yaml.safe_load_all(f.read_text())]  # fmt: skip
    else:
        done = _run(kubectl, "kustomize", K8S)
        assert done.returncode == 0, done.stderr
        docs = list(yaml.safe_load_all(done.stdout))
    path = tmp_path / "built.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path, docs


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return _run(BIN / "kubernetes-validate", "--strict", "--quiet", path)


def test_the_kustomize_build_validates_against_the_kubernetes_schemas(tmp_path: Path) -> None:
    path, docs = _built(tmp_path)
    done = _validate(path)
    assert done.returncode == 0, done.stdout + done.stderr
    kinds = sorted(d["kind"] for d in docs)
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Job",
            "PersistentVolumeClaim", "NetworkPolicy", "ServiceMonitor"} <= set(kinds)  # fmt: skip
    # kubernetes-validate has no schema for the Prometheus Operator's CRD: check what it needs by hand
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "gateway")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "varigate"  # up{job="varigate"}


def test_the_validator_rejects_a_broken_manifest(tmp_path: Path) -> None:
    path, _docs = _built(tmp_path)
    path.write_text(path.read_text().replace("replicas: 2", "replicas: two", 1))
    done = _validate(path)
    assert done.returncode != 0 and "replicas" in done.stdout + done.stderr


def test_the_kustomization_lists_exactly_the_manifests_present() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    present = sorted(f.name for f in K8S.glob("*.yaml") if f.name != "kustomization.yaml")
    assert sorted(listed) == present


def test_the_gateway_deployment_matches_the_drain_and_the_autoscaler(tmp_path: Path) -> None:
    _path, docs = _built(tmp_path)
    deploy = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "gateway")
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    exit_timeout_s = float(env.get("VARIGATE_EXIT_TIMEOUT_SECS", Settings().exit_timeout_secs))
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] == PRESTOP_S
    assert pod["terminationGracePeriodSeconds"] >= PRESTOP_S + exit_timeout_s
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert (
        container["resources"]["requests"]
        and deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    )
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    adapter = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    assert metric in {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    assert hpa["spec"]["scaleTargetRef"]["name"] == deploy["metadata"]["name"]


def test_the_compose_file_validates() -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.fail("docker-compose not found: apt-get install docker-compose (the Debian package)")
    done = _run(compose, "-f", DEPLOY / "compose" / "compose.yaml", "config")
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert set(services) == {"compressor", "gateway", "triton", "prometheus", "grafana"}
    assert "tritonserver" in services["triton"]["image"]


def test_the_dockerfiles_pass_hadolint() -> None:
    files = sorted((DEPLOY / "docker").glob("*.Dockerfile"))
    assert [f.name for f in files] == ["compressor.Dockerfile", "gateway.Dockerfile"]
    done = _run(BIN / "hadolint", *files)
    assert done.returncode == 0, done.stdout + done.stderr
    gateway = (DEPLOY / "docker" / "gateway.Dockerfile").read_text()
    assert "USER 10001" in gateway and "HEALTHCHECK" in gateway and "[compress]" not in gateway
