#!/usr/bin/env bash
# Install a real NVIDIA tritonserver (2.51, from PyPI's nvidia-pytriton wheel; Python backend only) for the
# load tester's Triton peer and tests/peers. Idempotent: a stamp file makes a second run a no-op (< 2 s).
# Prints the install dir (the last line of stdout; progress goes to stderr). Layout of that dir:
#   wheel/pytriton/tritonserver/bin/tritonserver    the server (its libraries: wheel/nvidia_pytriton.libs)
#   wheel/pytriton/tritonserver/backends/python/     the Python backend with the 3.11 stub copied in
#   venv/                                            Debian's python3.11 (--system-site-packages) + onnxruntime
# The stub links Debian's libpython3.11, so the models it runs get Debian's interpreter: another Python's
# site-packages on its path made it receive all-zero input tensors (docs/triton.md).
# Usage: scripts/peers/triton.sh      VARIGATE_PEERS_DIR: where peers go (default <repo>/.peers)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DIR="${VARIGATE_PEERS_DIR:-$ROOT/.peers}/triton"
PYTRITON_VERSION="0.7.0"
DEBIAN_PY="/usr/bin/python3.11"
ORT_VERSION="$(sed -n 's/^onnxruntime==//p' "$ROOT/constraints.txt")"
[ -n "$ORT_VERSION" ] || { echo "triton.sh: no onnxruntime== pin in $ROOT/constraints.txt" >&2; exit 1; }
WANT="nvidia-pytriton==$PYTRITON_VERSION onnxruntime==$ORT_VERSION $(sha256sum "$0" | cut -c1-16)"
STAMP="$DIR/.installed"
SERVER="$DIR/wheel/pytriton/tritonserver"

installed() {
    [ -f "$STAMP" ] && grep -qxF -- "$WANT" "$STAMP" && [ -x "$SERVER/bin/tritonserver" ] \
        && [ -x "$SERVER/backends/python/triton_python_backend_stub" ] && [ -x "$DIR/venv/bin/python" ]
}

if installed; then echo "$DIR"; exit 0; fi
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9  # one installer at a time; the one that waited finds the stamp written
if installed; then echo "$DIR"; exit 0; fi
rm -f "$STAMP"

# Debian's interpreter and numpy for the stub; apt only when something is missing.
missing=()
for p in python3-numpy python3-venv; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
    echo "triton.sh: apt-get install ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq >&2 && $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi
[ -x "$DEBIAN_PY" ] || { echo "triton.sh: $DEBIAN_PY not found (Debian's python3.11)" >&2; exit 1; }

# The models' Python: Debian's, its numpy visible, onnxruntime at the project's pinned version.
if [ ! -x "$DIR/venv/bin/python" ]; then
    echo "triton.sh: venv $DIR/venv ($DEBIAN_PY)" >&2
    rm -rf "$DIR/venv"
    env -u PYTHONHOME -u PYTHONPATH "$DEBIAN_PY" -m venv --system-site-packages "$DIR/venv"
fi
PIP=(env -u PYTHONHOME -u PYTHONPATH "$DIR/venv/bin/python" -m pip -q --disable-pip-version-check)
echo "triton.sh: onnxruntime==$ORT_VERSION into $DIR/venv" >&2
"${PIP[@]}" install "onnxruntime==$ORT_VERSION" >&2

# The server: the wheel's bundled tritonserver, unzipped (zipfile keeps no modes: executables chmod'ed).
echo "triton.sh: nvidia-pytriton==$PYTRITON_VERSION" >&2
rm -rf "$DIR/download" "$DIR/wheel" "$DIR/wheel.partial"
"${PIP[@]}" download --no-deps --dest "$DIR/download" "nvidia-pytriton==$PYTRITON_VERSION" >&2
WHEEL=("$DIR"/download/nvidia_pytriton-"$PYTRITON_VERSION"-*.whl)
[ -f "${WHEEL[0]}" ] || { echo "triton.sh: no wheel downloaded into $DIR/download" >&2; exit 1; }
env -u PYTHONHOME -u PYTHONPATH "$DEBIAN_PY" -m zipfile -e "${WHEEL[0]}" "$DIR/wheel.partial"
PARTIAL="$DIR/wheel.partial/pytriton/tritonserver"
chmod +x "$PARTIAL/bin/tritonserver"
mkdir -p "$PARTIAL/backends/python"
cp "$PARTIAL/python_backend_stubs/3.11/triton_python_backend_stub" "$PARTIAL/backends/python/"
chmod +x "$PARTIAL/backends/python/triton_python_backend_stub"
mv "$DIR/wheel.partial" "$DIR/wheel"
rm -rf "$DIR/download"

echo "$WANT" > "$STAMP"
echo "$DIR"
