"""Organisations share data without the keyhost's admin (issue 20), against a real keyhost process.

The three faults of the issue (an owner could not grant; anyone joined anyone's join domain;
names leaked who owns what), the attack of the issue as a test, the two tutorials as three
processes (keyhost, owner, worker, each with its own token) and the two-organisation flow through
the CLI. Every refusal is typed and found in the audit log.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import ghostpii as gp
from conftest import DATA, KeyhostProcess

ROOT = Path(__file__).resolve().parent.parent
_ids = itertools.count()


def _unique(prefix: str) -> str:
    return f"{prefix}{next(_ids)}_{int(time.time() * 1000) % 10**8}"


def _owner(keyhost: KeyhostProcess, admin: gp.Session, prefix: str) -> gp.Session:
    """A new owner identity (the admin's only part) and a session with its own token."""
    name = _unique(prefix)
    admin.create_identity(name, role="owner")
    return gp.connect(keyhost.url, admin.create_token(name))


def _name(s: gp.Session) -> str:
    return str(s.whoami()["identity"])


def _refused(session: gp.Session, operation: str, *, identity: str | None = None) -> list[dict[str, Any]]:
    """The refused entries of ``operation`` filed under an owner (``scope=mine``)."""
    log = session.audit(mine=True)
    rows = log.filter((pl.col("operation") == operation) & (pl.col("decision") == "refused"))
    if identity is not None:
        rows = rows.filter(pl.col("identity") == identity)
    return rows.to_dicts()


def _surnames(n: int) -> list[str]:
    """The surnames of the first ``n`` people of the sample data (with repeats)."""
    return [str(s) for s in pl.read_csv(DATA / "rldata500.csv")["lname_c1"].head(n)]


def _dictionary() -> pl.DataFrame:
    """An attacker's dictionary: every distinct surname of the sample data."""
    return pl.DataFrame({"surname": sorted(set(_surnames(500)))})


# -- fault 3: names ----------------------------------------------------------------------------


def test_names_do_not_leak_owners(keyhost: KeyhostProcess, admin: gp.Session) -> None:
    clinic = _owner(keyhost, admin, "clinic")
    insurer = _owner(keyhost, admin, "insurer")
    bank = _owner(keyhost, admin, "bank")
    crm = _unique("crm")
    mine = clinic.create_dataset(crm)
    theirs = insurer.create_dataset(crm)  # was: 409 dataset 'crm' already exists (owner 'clinic')
    assert (theirs.owner, mine.owner) == (_name(insurer), _name(clinic)) and theirs.id != mine.id
    with pytest.raises(gp.KeyhostError) as e:
        insurer.create_dataset(crm, exist_ok=False)
    assert (e.value.reason, e.value.status) == ("conflict", 409)
    assert _name(clinic) not in str(e.value)
    persons = _unique("persons")
    clinic.create_join_domain(persons)
    assert insurer.create_join_domain(persons, exist_ok=False) == persons
    with pytest.raises(gp.KeyhostError, match="you already own") as e:
        insurer.create_join_domain(persons, exist_ok=False)
    assert _name(clinic) not in str(e.value)

    # another owner's dataset is refused exactly as a name nobody uses
    def refusal(name: str) -> str:
        with pytest.raises(gp.KeyhostError) as e:
            bank.rotate_column_key(name, "x")
        assert e.value.reason == "not_found"
        return str(e.value).replace(name, "NAME")

    assert refusal(crm) == refusal(_unique("nobody"))
    assert _name(clinic) not in refusal(crm) and _name(insurer) not in refusal(crm)
    # each owner's audit of "crm" is its own dataset's
    clinic.allocate_rids(crm, 3, [])
    insurer.allocate_rids(crm, 4, [])
    log = clinic.audit(crm)
    assert _name(insurer) not in set(log["identity"].drop_nulls())
    counts = [json.loads(p)["count"] for p in log.filter(pl.col("operation") == "rids.allocate")["params"]]
    assert counts == [3]


# -- fault 1: an owner grants without the admin --------------------------------------------------


def test_owner_grants_without_the_admin(keyhost: KeyhostProcess, admin: gp.Session) -> None:
    clinic = _owner(keyhost, admin, "clinic")
    insurer = _owner(keyhost, admin, "insurer")
    ds = clinic.create_dataset(_unique("visits"))
    enc = gp.encrypt(pl.DataFrame({"cost": [10, 20, 30, 40]}), ds, {"cost": gp.integer(bounds=(0, 100))})

    # was: PermissionDenied "may not create identities: only an admin may"
    token = clinic.grant("worker", ds, [gp.allow.aggregate("cost", min_rows=2)])
    worker = gp.connect(keyhost.url, token)
    full = f"{_name(clinic)}/worker"
    assert worker.whoami()["identity"] == full
    assert enc.lazy().select(pl.col("cost").ghost.sum()).ghost.collect(worker)["cost"][0] == 100
    with pytest.raises(gp.PermissionDenied):
        enc.lazy().select(pl.col("cost").ghost.decrypt()).ghost.collect(worker)
    # the same identity again (by its short name), a second token
    assert clinic.grant("worker", ds, [gp.allow.compare("cost")], issue_token=False) is None
    assert [i["name"] for i in clinic.identities()] == [full]
    assert clinic.identities()[0]["manager"] == _name(clinic)
    assert {t["identity"] for t in clinic.tokens()} == {full}
    assert insurer.identities() == [] and insurer.tokens() == []

    # another owner can neither issue nor revoke the clinic's tokens, nor grant to its worker
    tid = clinic.tokens("worker")[0]["token_id"]
    with pytest.raises(gp.PermissionDenied, match="not one you manage") as e:
        insurer.create_token(full)
    assert e.value.reason == "permission_denied"
    with pytest.raises(gp.PermissionDenied, match="not a token of an identity you manage"):
        insurer.revoke_token(tid)
    claims = insurer.create_dataset(_unique("claims"))
    with pytest.raises(gp.KeyhostError, match="shares it with you") as e:
        insurer.grant(full, claims, [gp.allow.aggregate("amount")], issue_token=False)
    assert e.value.reason == "not_found" and insurer.grants(claims) == []
    assert _refused(insurer, "identity.create", identity=_name(insurer))
    # the explicit act: the clinic shares its worker; now the insurer's grant reaches it
    clinic.share_identity("worker", _name(insurer))
    assert insurer.grant(full, claims, [gp.allow.aggregate("amount")], issue_token=False) is None
    assert any(g["identity"] == full for g in insurer.grants(claims))
    assert [i["name"] for i in insurer.identities() if i["manager"] == _name(clinic)] == [full]
    with pytest.raises(gp.PermissionDenied, match="may not issue its tokens"):
        insurer.grant(full, claims, [gp.allow.aggregate("amount")])  # tokens stay with the clinic

    # the clinic revokes its worker's token
    clinic.revoke_token(tid)
    with pytest.raises(gp.AuthenticationError):
        gp.connect(keyhost.url, token).whoami()
    # refusals typed and audited, filed under the owner that was refused; the share in both logs
    assert _refused(insurer, "token.create", identity=_name(insurer))
    assert _refused(insurer, "token.revoke", identity=_name(insurer))
    for s in (clinic, insurer):
        shares = s.audit(mine=True).filter(pl.col("operation") == "identity.share")
        assert shares.height == 1 and shares["identity"][0] == _name(clinic)
    # a member manages nothing and has no audit log of its own
    again = gp.connect(keyhost.url, clinic.create_token("worker"))
    with pytest.raises(gp.PermissionDenied):
        again.create_identity("x")
    with pytest.raises(gp.PermissionDenied):
        again.audit(mine=True)


def test_a_lead_issues_tokens_within_the_owners_limits(keyhost: KeyhostProcess, admin: gp.Session) -> None:
    clinic = _owner(keyhost, admin, "clinic")
    ds = clinic.create_dataset(_unique("visits"))
    enc = gp.encrypt(pl.DataFrame({"cost": [10, 20, 30, 40]}), ds, {"cost": gp.integer(bounds=(0, 100))})
    lead = gp.connect(keyhost.url, clinic.grant("lead", ds, []))
    clinic.grant("worker", ds, [gp.allow.aggregate("cost", min_rows=2)], issue_token=False)
    with pytest.raises(gp.PermissionDenied):
        lead.create_token("worker", ttl_seconds=600)
    d = clinic.delegate_tokens("lead", max_ttl_seconds=600, ttl_seconds=3600)
    assert d["identity"] == f"{_name(clinic)}/lead" and d["max_ttl_seconds"] == 600
    worker = gp.connect(keyhost.url, lead.create_token("worker", ttl_seconds=600))
    assert enc.lazy().select(pl.col("cost").ghost.sum()).ghost.collect(worker)["cost"][0] == 100
    with pytest.raises(gp.PermissionDenied, match="beyond the delegation"):
        lead.create_token("worker", ttl_seconds=601)
    with pytest.raises(gp.PermissionDenied):
        lead.create_token("lead", ttl_seconds=60)  # never for itself
    with pytest.raises(gp.PermissionDenied):
        lead.grant("worker", ds, [gp.allow.decrypt("cost")], issue_token=False)
    clinic.delegate_tokens("lead", revoke=True)
    with pytest.raises(gp.PermissionDenied):
        lead.create_token("worker", ttl_seconds=60)
    log = clinic.audit(mine=True)
    assert log.filter((pl.col("identity") == f"{_name(clinic)}/lead") & (pl.col("decision") == "refused")).height >= 4


# -- fault 2 and the attack: join domains ------------------------------------------------------


def _two_orgs(
    keyhost: KeyhostProcess, admin: gp.Session, n: int
) -> tuple[gp.Session, gp.Session, str, pl.DataFrame, gp.Dataset]:
    """The clinic's dataset of ``n`` surnames in its domain, and a ``group`` grant for the insurer."""
    clinic = _owner(keyhost, admin, "clinic")
    insurer = _owner(keyhost, admin, "insurer")
    persons = _unique("persons")
    clinic.create_join_domain(persons)
    crm = clinic.create_dataset(_unique("crm"))
    df = pl.DataFrame({"surname": _surnames(n)})
    enc = gp.encrypt(df, crm, {"surname": gp.text(group=True, join_domain=persons)})
    clinic.grant(_name(insurer), crm, [gp.allow.group("surname")], issue_token=False)
    return clinic, insurer, persons, enc, crm


def _keys(enc: pl.DataFrame, session: gp.Session) -> set[int]:
    return set(enc.lazy().select(pl.col("surname").ghost.key()).ghost.collect(session)["surname"].to_list())


def test_attack_without_consent_gets_nothing(keyhost: KeyhostProcess, admin: gp.Session) -> None:
    clinic, insurer, persons, crm, _ = _two_orgs(keyhost, admin, 300)
    words = _dictionary()  # the insurer's dictionary: every surname
    dictionary = insurer.create_dataset(_unique("dict"))

    # registering a column in the clinic's domain without its consent: refused, typed, audited
    def refusal(owner: str | None) -> str:
        spec = gp.text(group=True, join_domain=persons, join_domain_owner=owner)
        with pytest.raises(gp.KeyhostError, match="has not made your organisation a member") as e:
            gp.encrypt(words, dictionary, {"surname": spec})
        assert e.value.reason == "not_found"
        return str(e.value).replace(owner or "", "OWNER")

    assert _name(clinic) not in refusal(None)
    # naming the clinic gets the refusal a made-up owner gets: nothing confirms the domain exists
    assert refusal(_name(clinic)) == refusal("nobody-at-all")
    assert len(_refused(insurer, "column.register", identity=_name(insurer))) == 3
    assert len(_refused(clinic, "column.register", identity=_name(insurer))) == 3, "the clinic sees the attempts"
    # the insurer's own domain of the same name: its dictionary's pseudonyms
    insurer.create_join_domain(persons)
    mine = gp.encrypt(words, dictionary, {"surname": gp.text(group=True, join_domain=persons)})
    # with the pads of all 300 clinic rows (its group grant), it matches none of them
    theirs = _keys(crm, insurer)
    assert len(theirs) == len(set(_surnames(300))) > 50
    assert theirs.isdisjoint(_keys(mine, insurer))
    with pytest.raises(gp.UnsupportedOperation, match="join domain"):
        crm.lazy().join(mine.lazy(), left_on=pl.col("surname").ghost.key(),
                        right_on=pl.col("surname").ghost.key()).ghost.collect(insurer)  # fmt: skip
    pads = clinic.audit(mine=True).filter((pl.col("operation") == "pads") & (pl.col("identity") == _name(insurer)))
    assert pads.height >= 1 and set(pads["decision"]) == {"issued"}


def test_key_holder_pads_are_an_explicit_choice(keyhost: KeyhostProcess, admin: gp.Session) -> None:
    clinic, insurer, persons, crm, crm_ds = _two_orgs(keyhost, admin, 300)
    words = _dictionary()
    # consent: the clinic makes the insurer a member; both logs record it
    members = clinic.add_join_domain_member(persons, _name(insurer))
    assert [m["owner"] for m in members] == [_name(insurer)]
    for s in (clinic, insurer):
        adds = s.audit(mine=True).filter(pl.col("operation") == "join_domain.member.add")
        assert adds.height == 1 and adds["identity"][0] == _name(clinic)
    assert [(d["name"], d["owner"]) for d in insurer.join_domains()] == [(persons, _name(clinic))]
    dictionary = insurer.create_dataset(_unique("dict"))
    mine = gp.encrypt(words, dictionary, {"surname": gp.text(group=True, join_domain=persons)})
    mine = mine.with_columns(words["surname"].alias("plain"))  # the attacker knows its dictionary
    # the insurer now holds the domain's key: pads of the clinic's rows are refused ...
    with pytest.raises(gp.PermissionDenied, match="domain_key_holder=True") as e:
        _keys(crm, insurer)
    assert e.value.reason == "permission_denied"
    refused = clinic.audit(mine=True).filter(
        (pl.col("operation") == "pads") & (pl.col("decision") == "refused") & (pl.col("identity") == _name(insurer))
    )
    assert refused.height >= 1
    # ... until the clinic grants them explicitly; then the dictionary attack works (why the rule)
    clinic.grant(_name(insurer), crm_ds, [gp.allow.group("surname", domain_key_holder=True)], issue_token=False)
    pairs = crm.lazy().join(mine.lazy(), left_on=pl.col("surname").ghost.key(),
                            right_on=pl.col("surname").ghost.key()).ghost.collect(insurer)  # fmt: skip
    assert pairs.height == 300
    assert sorted(pairs["plain"].to_list()) == sorted(_surnames(300)), "the 300 surnames, recovered"

    # leaving: no new column in the domain; both logs record it
    insurer.leave_join_domain(persons, owner=_name(clinic))
    with pytest.raises(gp.KeyhostError, match="has not made your organisation a member"):
        gp.encrypt(words, insurer.create_dataset(_unique("d2")), {"surname": gp.text(group=True, join_domain=persons)})
    for s in (clinic, insurer):
        assert s.audit(mine=True).filter(pl.col("operation") == "join_domain.member.remove").height == 1
    # rotation: the clinic's new columns no longer match the old key the insurer keeps
    clinic.rotate_join_domain(persons)
    fresh = gp.encrypt(
        words, clinic.create_dataset(_unique("crm2")), {"surname": gp.text(group=True, join_domain=persons)}
    )
    clinic_keys = _keys(fresh, clinic)
    assert clinic_keys.isdisjoint(_keys(mine, insurer))


# -- the tutorials: keyhost, owner and worker as three processes ----------------------------------


def _run(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, **kw)


def test_tutorials_run_as_three_processes(keyhost: KeyhostProcess, admin: gp.Session, tmp_path: Path) -> None:
    # process 1 is the keyhost (`ghostpii keyhost serve`); its admin only creates the owner
    owner = _unique("clinic")
    admin.create_identity(owner, role="owner")
    (tmp_path / "owner.token").write_text(admin.create_token(owner))
    out = tmp_path / "share"
    # process 2: the owner, with its own token
    r = _run([sys.executable, str(ROOT / "examples" / "tutorial_owner.py"), "--url", keyhost.url,
              "--token-file", str(tmp_path / "owner.token"), "--out", str(out)])  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    granted = json.loads(r.stdout)
    assert granted["owner"] == owner and granted["worker"] == f"{owner}/worker"
    assert sorted(g["operation"] for g in granted["grants"]) == ["aggregate", "compare", "moments"]
    worker_token = (out / "worker.token").read_text().strip()
    assert worker_token.startswith("gpt_") and worker_token != (tmp_path / "owner.token").read_text()
    assert (out / "worker.token").stat().st_mode & 0o777 == 0o600
    # process 3: the worker, with the token its owner issued
    r = _run([sys.executable, str(ROOT / "examples" / "tutorial_worker.py"), "--url", keyhost.url,
              "--token-file", str(out / "worker.token"), "--data", str(out / "insurance.parquet")])  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout)
    assert got["identity"] == f"{owner}/worker"
    charges = pl.read_csv(DATA / "insurance.csv")["charges"].round(2)
    assert math.isclose(got["mean"], charges.mean(), rel_tol=1e-12)  # type: ignore[arg-type]
    assert math.isclose(got["std"], charges.std(), rel_tol=1e-9)  # type: ignore[arg-type]
    assert got["median"] == charges.median()
    by_region = pl.read_csv(DATA / "insurance.csv").group_by("region").agg(pl.col("charges").round(2).mean())
    for region, mean in by_region.iter_rows():
        assert math.isclose(got["mean_by_region"][region], mean, rel_tol=1e-12)
    assert got["decrypt"] is not None, "the worker must be refused decryption"
    assert (got["decrypt"]["class"], got["decrypt"]["reason"]) == ("PermissionDenied", "permission_denied")
    assert "no 'decrypt' grant on column 'charges'" in got["decrypt"]["message"]
    # the owner's log shows the worker's answers and its refusal
    log = gp.connect(keyhost.url, (tmp_path / "owner.token").read_text()).audit(granted["dataset"])
    worker_rows = log.filter(pl.col("identity") == f"{owner}/worker")
    assert {"issued", "refused"} <= set(worker_rows["decision"])
    assert worker_rows.filter(pl.col("decision") == "refused")["reason"].to_list() == ["permission_denied"]


# -- the CLI -----------------------------------------------------------------------------------


def test_two_organisations_through_the_cli(keyhost: KeyhostProcess, admin: gp.Session, tmp_path: Path) -> None:
    clinic, insurer = _unique("clinic"), _unique("insurer")

    def cli(token: str, *args: str, ok: bool = True) -> str:
        env_args = ["--url", keyhost.url, "--token", token]
        r = _run([sys.executable, "-m", "ghostpii.cli", *args, *env_args])
        assert (r.returncode == 0) == ok, r.stdout + r.stderr
        return r.stdout if ok else r.stderr

    cli(keyhost.admin_token, "identity", "create", clinic, "--role", "owner")
    cli(keyhost.admin_token, "identity", "create", insurer, "--role", "owner")
    c_tok = cli(keyhost.admin_token, "token", "create", clinic).strip()
    i_tok = cli(keyhost.admin_token, "token", "create", insurer).strip()
    # from here on, no admin
    ds = _unique("visits")
    cli(c_tok, "dataset", "create", ds)
    created = cli(c_tok, "identity", "create", "worker")
    assert f"name     {clinic}/worker" in created and f"manager  {clinic}" in created
    out = cli(c_tok, "grant", "add", "worker", ds, "--aggregate", "cost", "--min-rows", "2", "--issue-token")
    lines = out.strip().splitlines()
    assert lines[0] == f"granted aggregate on {ds}.cost to {clinic}/worker (min_rows=2)"
    assert gp.connect(keyhost.url, lines[1]).whoami()["identity"] == f"{clinic}/worker"
    tokens = json.loads(cli(c_tok, "token", "list", "--json"))
    assert {t["identity"] for t in tokens} == {f"{clinic}/worker"}
    listed = cli(c_tok, "identity", "list")
    assert {"id", "name", "role", "manager"} <= set(listed.splitlines()[0].split()) and f"{clinic}/worker" in listed
    # the insurer may not issue the clinic's worker a token (typed error, exit 2)
    err = cli(i_tok, "token", "create", f"{clinic}/worker", ok=False)
    assert "error: PermissionDenied" in err and "not one you manage" in err
    cli(c_tok, "identity", "share", "worker", insurer)
    domain = _unique("persons")
    cli(c_tok, "join-domain", "create", domain)
    members = cli(c_tok, "join-domain", "add-member", domain, insurer)
    assert insurer in members
    joined = json.loads(cli(i_tok, "join-domain", "list", "--json"))
    assert [(d["name"], d["owner"]) for d in joined] == [(domain, clinic)]
    cli(i_tok, "join-domain", "leave", domain)
    assert json.loads(cli(i_tok, "join-domain", "list", "--json")) == []
    assert "showing 8 of 8 entries" in cli(c_tok, "audit", "list", "--mine", "--limit", "100")
    mine = json.loads(cli(c_tok, "audit", "list", "--mine", "--limit", "100", "--json"))["entries"]
    ops = {e["operation"] for e in mine}
    assert ops == {"dataset.create", "identity.create", "grant.create", "token.create", "identity.share",
                   "join_domain.create", "join_domain.member.add", "join_domain.member.remove"}  # fmt: skip
    assert {e["identity"] for e in mine} == {clinic, insurer}, "the insurer's leaving is in the clinic's log"
