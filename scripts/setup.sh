#!/usr/bin/env bash
# Create or reuse .venv and install varigate with the given extras. Idempotent and quick when nothing changed.
# Usage: scripts/setup.sh [extras]   (default extras: compress,test)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-compress,test}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

# Debian packages some tests need; installed only when missing. fortunes-min and fortunes: the general-English
# text MiniLM's variants are gated on (compressor/english.py). docker-compose: tests/ops validates
# deploy/compose with it (Debian's prometheus comes from scripts/peers/prometheus.sh, when a test needs it).
APT_PACKAGES=(fortunes-min fortunes docker-compose)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
STAMP=".venv/.varigate-installed"
WANT="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)-${EXTRAS}"
if [ ! -f "$STAMP" ] || ! grep -qx -- "$WANT" "$STAMP"; then
    # torch first and pinned: the CPU build of 2.13.0; anything unpinned pulls GBs of CUDA wheels.
    if [[ ",$EXTRAS," == *",compress,"* ]]; then
        .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt "torch==2.13.0"
    fi
    .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e ".[${EXTRAS}]"
    echo "$WANT" > "$STAMP"
fi
