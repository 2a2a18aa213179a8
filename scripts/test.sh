#!/usr/bin/env bash
# Build ghostpii, then run every test: Rust (core, keyhost, linalg) and pytest end to end, plus linters.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ghostpii/target}"
PY="${PYTHON:-python3}"
bash scripts/build.sh
echo "== cargo fmt / clippy (core, proto, keyhost, linalg, fhe)"
cargo fmt --all -- --check
# The extension crate is not linted here: `cargo clippy` without maturin's environment
# (PYO3_PYTHON, ...) reconfigures pyo3, which makes the next maturin build rebuild Polars.
# Lint it by hand: scripts/clippy-extension.sh.
cargo clippy --release -p ghostpii-core -p ghostpii-proto -p ghostpii-keyhost -p ghostpii-linalg -p ghostpii-fhe --all-targets -- -D warnings
echo "== circles of imports (core, proto, keyhost, extension, linalg, Python)"
"$PY" scripts/import_cycles.py
echo "== ruff / mypy"
"$PY" -m ruff check python tests benchmarks examples scripts
"$PY" -m ruff format --check python tests benchmarks examples scripts
"$PY" -m mypy python/ghostpii
echo "== cargo test (core, proto, keyhost, linalg, fhe)"
cargo test --release -p ghostpii-core -p ghostpii-proto -p ghostpii-keyhost -p ghostpii-linalg -p ghostpii-fhe
echo "== pytest (end to end against a real keyhost)"
"$PY" -m pytest tests -q -p no:cacheprovider "$@"
