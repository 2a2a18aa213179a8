"""examples/feature_engineering.py runs end to end (embedded keyhost) and its fits are useful."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_feature_engineering_example_runs(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "feature_engineering.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "round trips for the fit: 2" in r.stdout, r.stdout
    r2 = float(r.stdout.split("R² ")[1].split()[0])
    acc = float(r.stdout.split("held-out accuracy ")[1].split()[0])
    assert r2 > 0.6 and acc > 0.7, r.stdout
    assert "gram" in r.stdout  # the audit lists the Gram descriptors
