#!/usr/bin/env bash
# The whole test suite, from a fresh machine: sets up .venv, runs the checks pyproject.toml declares
# (ruff format, ruff lint, mypy), then pytest. Any failed check stops the run before pytest.
# Usage: scripts/test.sh [pytest args]     VARIGATE_SKIP_CHECKS=1 skips the checks (pytest only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh compress,test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

check() {
    local name="$1"
    shift
    echo "== check: $name ($*)"
    if ! "$@"; then
        echo "FAILED check: $name. Fix what it reports (run: $*); pytest did not run." >&2
        exit 1
    fi
}

if [ "${VARIGATE_SKIP_CHECKS:-0}" != "1" ]; then
    check "formatting" .venv/bin/ruff format --check .
    check "lint" .venv/bin/ruff check .
    check "types" .venv/bin/mypy
fi
exec .venv/bin/python -m pytest -q -ra "$@"
