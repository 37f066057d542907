#!/usr/bin/env bash
# The main job: set up .venv, build the default model repository if it is missing, then serve it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh compress,test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
REPO="${VARIGATE_REPOSITORY:-model_repository}"
.venv/bin/varigate compress default --out "$REPO"
if .venv/bin/python -c "import gateway.main" 2>/dev/null; then
    exec .venv/bin/varigate serve --repository "$REPO" "$@"
fi
