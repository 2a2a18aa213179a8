"""Every fenced example in README.md and docs/ runs as written.

Fences tagged ``python`` or ``bash`` are executed; any other tag (``text``, ``console``, …)
marks an example that is not meant to run. Each document's python fences run in order in one
process, after a short setup named below (the context the prose assumes: a keyhost, an admin
session, a dataset); its bash fences run in order in one shell, with ``ghostpii`` on the PATH.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import KeyhostProcess

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNS = {"python", "bash"}
SKIPS = {"text", "console"}

IMPORTS = "from datetime import date\nimport polars as pl\nimport ghostpii as gp\n"
# What the prose of each document assumes exists before its first python fence.
SETUP = {
    "concepts.md": IMPORTS
    + """
kh = gp.Keyhost.local()
session = kh.admin()
ds = session.create_dataset("patrons")
df = pl.DataFrame({"region": ["north", "north", "south"], "branch": ["a", "b", "a"], "income": [1.5, 2.0, 3.25]})
gp.encrypt(df, ds, {"income": gp.number(decimals=2, bounds=(0, 10))}).write_parquet("patrons.parquet")
""",
    "privacy.md": IMPORTS
    + """
kh = gp.Keyhost.local()
admin = kh.admin()
ds = admin.create_dataset("patrons")
df = pl.DataFrame({"dob": [date(1990, 1, 1)], "age": [30], "income": [1.0], "salary": [2.0], "score": [3]})
gp.encrypt(df, ds, {"dob": gp.date(compare=True), "age": gp.integer(bounds=(0, 120), compare=True),
                    "income": gp.number(bounds=(0, 10)), "salary": gp.number(bounds=(0, 10)),
                    "score": gp.integer(bounds=(0, 10))})
an = gp.connect(kh.url, admin.grant("analyst", ds, []))
""",
    "rowwise.md": IMPORTS
    + """
kh = gp.Keyhost.local()
admin = kh.admin()
ds = admin.create_dataset("survey")
cols = ["aches", "cough", "fatigue", "sore_throat", "runny_nose"]
df = pl.DataFrame({**{c: [1, 0, 1] for c in cols}, "temperature": [101.2, 99.0, 98.6], "x": [3, -2, 7], "y": [1, 5, 7]})
enc = gp.encrypt(df, ds, {**{c: gp.integer(bounds=(0, 1)) for c in cols},
                          "temperature": gp.number(decimals=1, bounds=(90, 110)),
                          "x": gp.integer(bounds=(-10, 10)), "y": gp.integer(bounds=(0, 10))})
doctor = gp.connect(kh.url, admin.grant("doctor", ds, [gp.allow.compute([*cols, "temperature", "x", "y"],
                                                                       max_evaluations=4, reveal_values=True)]))
""",
}


def _fences(path: Path) -> list[tuple[str, str]]:
    return re.findall(r"^```(\w*)\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_every_fence_is_tagged() -> None:
    for path in DOCS:
        for tag, _ in _fences(path):
            assert tag in RUNS | SKIPS, f"{path.name}: a fence tagged {tag!r}; use python/bash to run it, text not to"


WITH_PYTHON = [p for p in DOCS if any(tag == "python" for tag, _ in _fences(p))]


@pytest.mark.parametrize("path", WITH_PYTHON, ids=lambda p: p.name)
def test_python_fences_run(path: Path, tmp_path: Path) -> None:
    blocks = [code for tag, code in _fences(path) if tag == "python"]
    script = tmp_path / "doc.py"
    script.write_text(SETUP.get(path.name, "") + "\n".join(blocks))
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                       env=_env())  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    if path.name == "README.md":
        assert "<sealed sum(income) over 2 rows>" in r.stdout, r.stdout
        assert "'round_trips': 2" in r.stdout and "'retries': 0" in r.stdout
        assert "no 'decrypt' grant on column 'name'" in r.stdout


def test_readme_tour_output_does_not_depend_on_the_date(tmp_path: Path) -> None:
    tour = next(code for tag, code in _fences(ROOT / "README.md") if tag == "python")
    assert "as_of=" in tour and "date.today" not in tour


def test_readme_tour_type_checks(tmp_path: Path) -> None:
    tour = next(code for tag, code in _fences(ROOT / "README.md") if tag == "python")
    script = tmp_path / "tour.py"
    script.write_text(tour)
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300, env=_env())  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bash(path: Path, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = "set -euo pipefail\n"
    for tag, code in _fences(path):
        if tag != "bash":
            continue
        for line in code.splitlines():
            if line.startswith("ghostpii keyhost serve"):
                # the foreground server of the walkthrough runs in the background here
                cmd = line.split("#", 1)[0].strip()
                script += f"{cmd} > serve.log 2>&1 &\nSERVER=$!\ntrap 'kill $SERVER' EXIT\n"
                script += "for _ in $(seq 100); do grep -q 'listening on' serve.log && break; sleep 0.1; done\n"
            else:
                script += line + "\n"
    port = str(_free_port())
    script = script.replace("127.0.0.1:8750", f"127.0.0.1:{port}")
    (tmp_path / "doc.sh").write_text(script)
    return subprocess.run(["bash", str(tmp_path / "doc.sh")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip


def test_keyhost_walkthrough_runs(tmp_path: Path) -> None:
    r = _bash(ROOT / "docs" / "keyhost.md", tmp_path, _env())
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "granted aggregate on patrons.income to analyst (min_rows=10)" in r.stdout, r.stdout
    assert "gpt_" in r.stdout, "grant add --issue-token prints a token"


def test_privacy_shell_examples_run(tmp_path: Path) -> None:
    kh = KeyhostProcess(tmp_path / "kh")
    try:
        env = dict(_env(), URL=kh.url, TOKEN=kh.admin_token)
        r = _bash(ROOT / "docs" / "privacy.md", tmp_path, env)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    finally:
        kh.stop()
