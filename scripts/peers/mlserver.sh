#!/usr/bin/env bash
# Install Seldon MLServer, the Python teams' peer, into a venv of its own (its pins clash with .venv's:
# fastapi<0.116, its own tritonclient and protobuf ranges). Idempotent: a stamp keyed by what is installed
# and by this script makes a second run a few file reads (< 2 s). Prints the install dir (the last line of
# stdout; pip's progress goes to stderr); the venv is <dir>/venv.
# Usage: scripts/peers/mlserver.sh      VARIGATE_PEERS_DIR: where peers go (default <repo>/.peers)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PY="${PYTHON:-python3.11}" # the interpreter scripts/setup.sh makes .venv with
command -v "$PY" >/dev/null 2>&1 || PY=python3
MLSERVER_VERSION="1.7.1" # the newest release on PyPI; installs and serves here with Python 3.11
# onnxruntime as constraints.txt pins it, so MLServer runs the kernels varigate runs.
ORT_PIN="$(grep -E '^onnxruntime==' "$ROOT/constraints.txt" | head -n1)"
[ -n "$ORT_PIN" ] || { echo "mlserver.sh: no onnxruntime== pin in $ROOT/constraints.txt" >&2; exit 1; }
# uvloop below 0.22: from 0.22 its policy's get_event_loop() raises when no loop is set, and MLServer
# 1.7.1's inference worker calls it before it has one (mlserver/parallel/worker.py _ignore_signals), so
# every worker dies at start ("There is no current event loop in thread 'MainThread'") and MLServer's
# default of one worker process serves nothing.
REQS=("mlserver==$MLSERVER_VERSION" "$ORT_PIN" numpy "uvloop==0.21.0")

DIR="${VARIGATE_PEERS_DIR:-$ROOT/.peers}/mlserver"
VENV="$DIR/venv"
STAMP="$DIR/.installed"
WANT="${REQS[*]} $("$PY" -c 'import sys; print(sys.version.split()[0])') $(sha256sum "$0" | cut -c1-16)"

installed() {
    [ -f "$STAMP" ] && grep -qxF -- "$WANT" "$STAMP" && [ -x "$VENV/bin/mlserver" ]
}

if installed; then echo "$DIR"; exit 0; fi
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9 # one installer at a time; the one that waited finds the stamp written
if installed; then echo "$DIR"; exit 0; fi
rm -f "$STAMP"
if [ ! -x "$VENV/bin/python" ]; then
    echo "mlserver.sh: venv $VENV ($PY)" >&2
    env -u PYTHONHOME -u PYTHONPATH "$PY" -m venv "$VENV"
fi
echo "mlserver.sh: ${REQS[*]} into $VENV" >&2
env -u PYTHONHOME -u PYTHONPATH "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "${REQS[@]}" >&2
env -u PYTHONHOME -u PYTHONPATH "$VENV/bin/mlserver" --version >&2 # a broken install fails here
echo "$WANT" >"$STAMP"
echo "$DIR"
