#!/usr/bin/env bash
# Install Debian's real Prometheus (the `prometheus` package: prometheus and promtool) for tests/ops and the
# operations guide's panel images. Idempotent: apt runs only when a binary is missing (sudo when not root).
# Prints two lines on stdout, the paths of promtool and prometheus (progress goes to stderr); exits non-zero
# with a message saying why when they cannot be had.
# Usage: scripts/peers/prometheus.sh
set -euo pipefail
PROMTOOL="$(command -v promtool || true)"
PROMETHEUS="$(command -v prometheus || true)"
if [ -z "$PROMTOOL" ] || [ -z "$PROMETHEUS" ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "prometheus.sh: not root and no sudo to apt-get install prometheus" >&2; exit 1; }
        SUDO="sudo"
    fi
    echo "prometheus.sh: apt-get install prometheus" >&2
    export DEBIAN_FRONTEND=noninteractive
    # --no-install-recommends: not the exporters it recommends. Its postinst enables a systemd service; the
    # tests start their own prometheus on a free port (where systemd runs, stop that service if unwanted).
    $SUDO apt-get update -qq >&2
    $SUDO apt-get install -y -qq --no-install-recommends prometheus >&2
    PROMTOOL="$(command -v promtool || true)"
    PROMETHEUS="$(command -v prometheus || true)"
fi
[ -x "$PROMTOOL" ] || { echo "prometheus.sh: promtool not found after installing prometheus" >&2; exit 1; }
[ -x "$PROMETHEUS" ] || { echo "prometheus.sh: prometheus not found after installing it" >&2; exit 1; }
echo "$PROMTOOL"
echo "$PROMETHEUS"
