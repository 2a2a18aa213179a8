#!/usr/bin/env bash
# Build the Rust extension with maturin and install ghostpii (+ dev tools) into this Python.
# One cargo profile (release) and one persistent target dir serve tests, extension and benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ghostpii/target}"
PY="${PYTHON:-python3}"
"$PY" -m pip install --quiet --disable-pip-version-check "maturin>=1.7,<2"
rm -rf target/wheels
"$PY" -m maturin build --release --interpreter "$PY" --out target/wheels
wheel=$(ls target/wheels/ghostpii-*.whl)
"$PY" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheel"
"$PY" -m pip install --quiet --disable-pip-version-check "${wheel}[dev]"
