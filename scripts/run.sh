#!/usr/bin/env bash
# The main job, serve first: set up .venv, build the quick variants (the digits CNN's, MiniLM fp32 and
# int8), start the gateway on the repository in poll mode, and build the heavy variants (MiniLM fp16,
# pruned, structured) in the background; each one that lands is served without a restart. Ctrl-C stops
# both (the gateway drains); a later run skips what is built. Extra arguments go to `varigate serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh compress,test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
REPO="${VARIGATE_REPOSITORY:-model_repository}"
POLL_SECS="${VARIGATE_REPOSITORY_POLL_SECS:-2}"

echo "[run] building the quick variants into $REPO (built ones are skipped)"
.venv/bin/varigate compress digits --out "$REPO"
.venv/bin/varigate compress minilm --out "$REPO" --variants int8

# setsid: the gateway in a process group of its own, so a Ctrl-C on the terminal reaches only this script,
# which then sends the gateway exactly one SIGTERM (a second signal would cut its drain short).
setsid .venv/bin/varigate serve --repository "$REPO" --model-control-mode poll \
    --repository-poll-secs "$POLL_SECS" "$@" &
SERVE=$!
# setsid: the build gets its own process group, so stopping it stops its workers too. It prefixes its own
# lines with [build] (no pipe: on a terminal its progress bars redraw in place; otherwise it writes a
# parseable progress line every VARIGATE_PROGRESS_SECS seconds, see compressor/progress.py).
setsid bash -c '
    VARIGATE_LOG_PREFIX="[build] " PYTHONUNBUFFERED=1 .venv/bin/varigate compress minilm --out "$1"
    rc=$?
    if [ "$rc" = 0 ]; then echo "[run] background build finished: every variant that passed its gate is served"
    else echo "[run] background build stopped (exit $rc); the gateway serves what was built"; fi
' build "$REPO" &
BUILD=$!
echo "[run] gateway pid $SERVE; heavy variants building in the background (pid $BUILD)"

stop() {
    trap - INT TERM
    echo "[run] stopping: the gateway drains, the build stops (a later run resumes it)"
    kill -TERM -- "-$BUILD" 2>/dev/null || true
    kill -TERM "$SERVE" 2>/dev/null || true
    wait "$SERVE" 2>/dev/null || true
    wait "$BUILD" 2>/dev/null || true
    exit 130
}
trap stop INT TERM

status=0
wait "$SERVE" || status=$?
kill -TERM -- "-$BUILD" 2>/dev/null || true
exit "$status"
