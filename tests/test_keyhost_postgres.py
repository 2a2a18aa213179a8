"""`ghostpii keyhost serve --database`: two replicas on one PostgreSQL database and one data dir share
one keyhost (identities, datasets, grants, audit), and `ghostpii audit verify --database` checks it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from pg_cluster import Cluster, postgres_cluster

import ghostpii as gp
from conftest import KeyhostProcess


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with postgres_cluster() as c:
        yield c


def test_two_replicas_share_one_keyhost(cluster: Cluster, tmp_path: Path) -> None:
    url = cluster.new_database()
    data = tmp_path / "keys"
    a = KeyhostProcess(data, ["--database", url])
    b = KeyhostProcess(data, ["--database", url])
    try:
        assert not (data / "keyhost.db").exists(), "all state is in PostgreSQL"
        assert a.admin().whoami()["keyhost_id"] == b.admin().whoami()["keyhost_id"]
        ds = a.admin().create_dataset("patrons")
        enc = gp.encrypt(pl.DataFrame({"x": [1, 2, 3, 4, 5]}), ds, {"x": gp.integer(bounds=(0, 10))})
        token = b.admin().grant("analyst", "patrons", [gp.allow.aggregate("x")])
        assert token
        assert "analyst" in {i["name"] for i in a.admin().identities()}
        # Keys issued by one replica, answered by the other.
        for kh in (a, b):
            assert enc.select(pl.col("x").ghost.sum()).ghost.reveal(gp.connect(kh.url, token))["x"][0] == 15
    finally:
        a.stop()
        b.stop()
    out = subprocess.run(
        [sys.executable, "-m", "ghostpii.cli", "audit", "verify", "--data", str(data), "--database", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] and report["entries"] >= 6, report


def test_a_replica_with_other_key_files_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    url = cluster.new_database()
    a = KeyhostProcess(tmp_path / "first", ["--database", url])
    try:
        with pytest.raises(RuntimeError, match="master.key is missing"):
            KeyhostProcess(tmp_path / "second", ["--database", url])
    finally:
        a.stop()
