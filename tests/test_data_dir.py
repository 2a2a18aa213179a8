"""One keyhost per data directory: a second `keyhost serve` on a running one's dir is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import ghostpii as gp
from conftest import KeyhostProcess


def test_a_second_keyhost_on_the_same_dir_is_refused(keyhost: KeyhostProcess) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ghostpii.cli", "keyhost", "serve", "--data", str(keyhost.data_dir), "--listen",
         "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode != 0
    assert "is in use by another keyhost" in r.stderr, r.stderr
    assert f"process {keyhost.proc.pid}" in r.stderr, r.stderr
    assert keyhost.admin().whoami()["identity"] == "admin", "the running keyhost is unharmed"


def test_the_dir_is_free_again_once_the_keyhost_stops(tmp_path: Path) -> None:
    kh = gp.Keyhost.local(tmp_path / "kh")
    with pytest.raises(gp.GhostError, match="is in use by another keyhost"):
        gp.Keyhost.local(tmp_path / "kh")
    kh.close()
    again = gp.Keyhost.local(tmp_path / "kh")
    assert again.admin().whoami()["identity"] == "admin"
    again.close()
