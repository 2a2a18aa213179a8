"""The keyhost process: tokens, grants, audit, CLI — against a real `ghostpii keyhost serve`."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import polars as pl
import pytest

import ghostpii as gp
from conftest import KeyhostProcess


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ghostpii.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_admin_token_file_is_private(keyhost: KeyhostProcess) -> None:
    mode = (keyhost.data_dir / "admin.token").stat().st_mode & 0o777
    assert mode == 0o600
    assert (keyhost.data_dir / "master.key").stat().st_mode & 0o777 == 0o600


def test_bad_expired_and_revoked_tokens(keyhost: KeyhostProcess, admin: gp.Session) -> None:
    import datetime as dt

    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with pytest.raises(gp.AuthenticationError):
        gp.connect(keyhost.url, "gpt_not-a-real-token")
    admin.create_identity("shortlived", exist_ok=True)
    tok = admin.create_token("shortlived", ttl_seconds=1)
    gp.connect(keyhost.url, tok)
    time.sleep(2.1)
    with pytest.raises(gp.AuthenticationError, match="expired"):
        gp.connect(keyhost.url, tok)
    tok2 = admin.create_token("shortlived")
    s = gp.connect(keyhost.url, tok2)
    tid = [t for t in admin.tokens("shortlived") if t["revoked_at"] is None][-1]["token_id"]
    admin.revoke_token(tid)
    with pytest.raises(gp.AuthenticationError, match="revoked"):
        s._whoami = None
        s.whoami()
    # every refused authentication is audited (no identity; a token fingerprint)
    auth = admin.audit(since=t0).filter(pl.col("operation") == "auth")
    assert {"unauthenticated", "token_expired", "token_revoked"} <= set(auth["reason"].to_list())
    assert (auth["decision"] == "refused").all()
    assert not any("gpt_" in p for p in auth["params"].to_list()), "tokens never appear in the log"


def test_analysts_cannot_manage_grants(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    token = admin.grant("nosy", dataset, [gp.allow.aggregate("x")])
    assert token
    an = gp.connect(keyhost.url, token)
    with pytest.raises(gp.PermissionDenied):
        an.grant("nosy", dataset.name, [gp.allow.decrypt("x")])


def test_revoked_grant_denies(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    enc = gp.encrypt(pl.DataFrame({"x": [1, 2, 3]}), dataset, {"x": gp.integer()})
    token = admin.grant("fickle", dataset, [gp.allow.aggregate("x")])
    assert token
    an = gp.connect(keyhost.url, token)
    assert enc.select(pl.col("x").ghost.sum()).ghost.reveal(an)["x"][0] == 6
    assert admin.revoke("fickle", dataset) == 1
    with pytest.raises(gp.PermissionDenied, match="aggregate"):
        enc.select(pl.col("x").ghost.sum()).ghost.reveal(an)


def test_forged_rids_are_refused(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    enc = gp.encrypt(pl.DataFrame({"x": [1, 2, 3]}), dataset, {"x": gp.integer()})
    st = enc["x"].ext.storage()
    forged = pl.DataFrame({"x": st}).with_columns(pl.col("x").struct.with_fields(pl.field("rid") + 10_000_000))
    forged = forged.with_columns(pl.col("x").ext.to(enc.schema["x"]))
    with pytest.raises(gp.PermissionDenied, match="allocated|unknown"):
        forged.select(pl.col("x").ghost.sum()).ghost.reveal(admin)


def test_tampered_audit_row_is_detected(tmp_path: pytest.TempPathFactory) -> None:
    data = tmp_path / "kh"  # type: ignore[operator]
    with gp.Keyhost.local(data) as kh:
        admin = kh.admin()
        ds = admin.create_dataset("audited")
        enc = gp.encrypt(pl.DataFrame({"x": [1, 2, 3]}), ds, {"x": gp.integer()})
        token = admin.grant("a", ds, [gp.allow.aggregate("x")])
        assert token
        an = gp.connect(kh.url, token)
        enc.select(pl.col("x").ghost.sum()).ghost.reveal(an)
        with pytest.raises(gp.PermissionDenied):
            enc.select(pl.col("x").ghost.decrypt()).ghost.reveal(an)
        assert admin.verify_audit()["ok"] is True
        log = admin.audit(ds)
        assert {"issued", "refused"} <= set(log["decision"].to_list())
    ok = _cli("audit", "verify", "--data", str(data))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    con = sqlite3.connect(data / "keyhost.db")
    table = "audit" if con.execute("select name from sqlite_master where name='audit'").fetchone() else "audit_log"
    con.execute(f"update {table} set decision = 'issued' where decision = 'refused'")
    con.commit()
    con.close()
    bad = _cli("audit", "verify", "--data", str(data))
    assert bad.returncode == 1
    assert '"ok": false' in bad.stdout


def test_cli_help_and_management(keyhost: KeyhostProcess, dataset: gp.Dataset) -> None:
    for args in (["--help"], ["keyhost", "serve", "--help"], ["grant", "add", "--help"], ["audit", "list", "--help"]):
        r = _cli(*args)
        assert r.returncode == 0 and "usage" in r.stdout.lower()
    import os

    env = dict(os.environ, GHOSTPII_URL=keyhost.url, GHOSTPII_TOKEN=keyhost.admin_token)
    r = _cli("grant", "add", "cli_user", dataset.name, "--aggregate", "x", "--issue-token", env=env)
    assert r.returncode == 0, r.stderr
    said, token = r.stdout.strip().splitlines()
    assert said == f"granted aggregate on {dataset.name}.x to cli_user"
    assert token.startswith("gpt_")
    r = _cli("grant", "list", "--dataset", dataset.name, "--json", env=env)
    assert '"cli_user"' in r.stdout
    r = _cli("audit", "list", "--dataset", dataset.name, env=env)
    assert r.returncode == 0 and "grant" in r.stdout
    gp.encrypt(pl.DataFrame({"c": [1, 2]}), dataset, {"c": gp.integer(bounds=(0, 9), compare=True)})
    r = _cli("grant", "add", "cli_user", dataset.name, "--compare", "c", "--range", "1,5", env=env)
    assert r.stdout.strip() == f"granted compare on {dataset.name}.c to cli_user (range=[1, 5])", r.stderr
    r = _cli("grant", "add", "cli_user", dataset.name, "--compare", "c", "--constants", "2,3", "--json", env=env)
    assert r.returncode == 0 and '"constants": [' in r.stdout, r.stderr
    nothing = _cli("grant", "add", "cli_user", dataset.name, env=env)
    assert nothing.returncode != 0 and "needs at least one of --aggregate, --compare or --decrypt" in nothing.stderr
    version = _cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"ghostpii {gp.__version__}"
    created = _cli("dataset", "create", f"{dataset.name}_cli", "--json", env=env)
    assert created.returncode == 0 and f'"{dataset.name}_cli"' in created.stdout
    listed = _cli("dataset", "list", env=env)
    assert listed.stdout.splitlines()[0].split() == ["dataset", "id", "owner"], "a table with a header"
    assert f"{dataset.name}_cli" in listed.stdout


def test_column_key_rotation_keeps_old_epochs_answering(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    spec = {"x": gp.integer(bounds=(0, 100), compare=True)}
    old = gp.encrypt(pl.DataFrame({"x": [1, 2, 3]}), dataset, spec)
    rotated = admin.rotate_column_key(dataset, "x")
    assert rotated["epoch"] == 2
    new = gp.encrypt(pl.DataFrame({"x": [10, 20]}), dataset, spec)
    assert old.schema["x"].meta()["epoch"] == 1  # type: ignore[attr-defined]
    assert new.schema["x"].meta()["epoch"] == 2  # type: ignore[attr-defined]
    token = admin.grant("rotator", dataset, [gp.allow.aggregate("x"), gp.allow.compare("x")])
    assert token
    an = gp.connect(keyhost.url, token)
    assert old.select(pl.col("x").ghost.sum()).ghost.reveal(an)["x"][0] == 6
    assert new.select(pl.col("x").ghost.sum()).ghost.reveal(an)["x"][0] == 30
    assert old.lazy().filter(pl.col("x").ghost.gt(1)).ghost.collect(an).height == 2
    assert new.lazy().filter(pl.col("x").ghost.gt(15)).ghost.collect(an).height == 1
    # the keys differ per epoch: cells of the new epoch relabelled as the old one open to noise
    relabelled = new.with_columns(pl.col("x").ext.storage().ext.to(old.schema["x"]))
    garbage = relabelled.select(pl.col("x").ghost.sum()).ghost.reveal(an)["x"][0]
    assert garbage not in (30, 6)
    assert abs(garbage) > 10**9, "a wrong-epoch key leaves a 128-bit pseudorandom mask"
