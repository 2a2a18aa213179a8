#!/usr/bin/env bash
# Build ghostpii, then run every test: Rust (core, keyhost, linalg) and pytest end to end, plus linters.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ghostpii/target}"
PY="${PYTHON:-python3}"
bash scripts/build.sh
echo "== cargo fmt / clippy (all crates)"
cargo fmt --all -- --check
cargo clippy --release -p ghostpii-core -p ghostpii-keyhost -p ghostpii-linalg --all-targets -- -D warnings
# the extension crate with the features maturin builds it with (first run: Polars in check mode)
cargo clippy --release -p ghostpii-python --features pyo3/extension-module -- -D warnings
echo "== ruff / mypy"
"$PY" -m ruff check python tests benchmarks examples
"$PY" -m ruff format --check python tests benchmarks examples
"$PY" -m mypy python/ghostpii
echo "== cargo test (core, keyhost, linalg)"
cargo test --release -p ghostpii-core -p ghostpii-keyhost -p ghostpii-linalg
echo "== pytest (end to end against a real keyhost)"
"$PY" -m pytest tests -q -p no:cacheprovider "$@"
