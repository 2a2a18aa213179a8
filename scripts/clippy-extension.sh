#!/usr/bin/env bash
# clippy -D warnings on the extension crate (src/python). Not part of scripts/test.sh: run
# without maturin's environment, cargo reconfigures pyo3 (its build script reads PYO3_* and the
# interpreter), so the next `scripts/build.sh` rebuilds every crate that depends on pyo3,
# Polars included (12-30 minutes here). Its own target dir keeps the main one intact.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CLIPPY_TARGET_DIR:-$HOME/.cache/ghostpii/target-clippy}"
cargo clippy --release -p ghostpii-python --features pyo3/extension-module -- -D warnings
