"""The README's tour runs as written (against its own embedded keyhost)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_tour_runs(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has a python tour"
    script = tmp_path / "tour.py"
    script.write_text(blocks[0])
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "<sealed sum(income) over 2 rows>" in r.stdout or "sealed" in r.stdout
    assert "'round_trips': 2" in r.stdout
    assert "no 'decrypt' grant on column 'name'" in r.stdout
