#!/usr/bin/env bash
# Build ghostpii, then run the demo on an embedded keyhost: encrypt, query, model, audit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec "${PYTHON:-python3}" examples/demo.py "$@"
