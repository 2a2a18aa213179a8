"""Attack suite against a real keyhost process: every attack is refused or DP-bounded, and audited.

Plus DP answers and budgets end to end, tamper tests on the SQLite file, and a bounded load test
with a kill -9 in the middle.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import requests

import ghostpii as gp
from conftest import KeyhostProcess

N = 40


def _enc(ds: gp.Dataset, compare: bool = False) -> pl.DataFrame:
    df = pl.DataFrame({"x": list(range(N)), "y": [i % 7 for i in range(N)]})
    return gp.encrypt(df, ds, {"x": gp.integer(bounds=(0, 100), compare=compare), "y": gp.integer(bounds=(0, 10))})


def _analyst(keyhost: KeyhostProcess, admin: gp.Session, ds: gp.Dataset, allows: list[gp.allow.Allow]) -> gp.Session:
    token = admin.grant(f"an_{ds.name}", ds, allows)
    assert token is not None
    return gp.connect(keyhost.url, token)


def _sum(df: pl.DataFrame, session: gp.Session) -> Any:
    return df.select(pl.col("x").ghost.sum()).ghost.reveal(session)["x"][0]


def _audit(admin: gp.Session, ds: gp.Dataset, who: gp.Session) -> pl.DataFrame:
    return admin.audit(ds, identity=who.whoami()["identity"])


def _refused(log: pl.DataFrame, reason: str) -> int:
    return log.filter((pl.col("decision") == "refused") & (pl.col("reason") == reason)).height


def _forge_rids(enc: pl.DataFrame, shift: int) -> pl.DataFrame:
    st = enc["x"].ext.storage()
    forged = pl.DataFrame({"x": st}).with_columns(pl.col("x").struct.with_fields(pl.field("rid") + shift))
    return forged.with_columns(pl.col("x").ext.to(enc.schema["x"]))


# -- attacks -------------------------------------------------------------------------------


def test_single_row_sum_is_refused(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    enc = _enc(dataset)
    an = _analyst(keyhost, admin, dataset, [gp.allow.aggregate("x", min_rows=5)])
    with pytest.raises(gp.PermissionDenied, match="at least 5"):
        _sum(enc.head(1), an)
    assert _refused(_audit(admin, dataset, an), "min_rows") == 1


def test_sum_over_never_allocated_rids_is_refused(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    enc = _enc(dataset)
    an = _analyst(keyhost, admin, dataset, [gp.allow.aggregate("x")])
    with pytest.raises(gp.PermissionDenied, match="never allocated"):
        _sum(_forge_rids(enc, 10_000_000), an)
    assert _refused(_audit(admin, dataset, an), "unknown_rids") == 1


def test_everyone_but_one_differencing_is_refused(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    enc = _enc(dataset)
    an = _analyst(keyhost, admin, dataset, [gp.allow.aggregate("x", min_rows=5)])
    assert _sum(enc, an) == sum(range(N))
    # Everyone but row 0, then subtract: the classic differencing attack (linear audit).
    with pytest.raises(gp.PermissionDenied, match="linear audit") as e:
        _sum(enc.slice(1), an)
    assert e.value.reason == "audit_disclosure"
    # A set that isolates no single row is fine; asking the same set again is fine.
    assert _sum(enc.slice(10), an) == sum(range(10, N))
    assert _sum(enc, an) == sum(range(N))
    assert _refused(_audit(admin, dataset, an), "audit_disclosure") == 1


def test_dp_bounds_differencing_and_repetition(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    enc = _enc(dataset)
    an = _analyst(keyhost, admin, dataset, [gp.allow.aggregate("x", min_rows=5, epsilon=0.5, budget=3.0)])
    a = _sum(enc, an)
    # Same request: the same noisy answer, charged once.
    assert _sum(enc, an) == a
    b = _sum(enc.slice(1), an)  # the differencing pair is answered, but with independent noise
    state = an.budget(dataset)
    assert state["epsilon_spent"] == pytest.approx(1.0)
    assert state["epsilon_total"] == pytest.approx(3.0)
    assert state["remaining"] == pytest.approx(2.0)
    assert (a, b) != (sum(range(N)), sum(range(1, N)))  # scale 200: exact answers are (almost) impossible
    for k in range(2, 6):
        _sum(enc.slice(k), an)
    with pytest.raises(gp.BudgetExhausted, match=r"spent 3 of 3 \(remaining 0\)"):
        _sum(enc.slice(7), an)
    log = _audit(admin, dataset, an)
    assert _refused(log, "budget_exhausted") == 1
    issued = log.filter((pl.col("operation") == "sum") & (pl.col("decision") == "issued"))
    assert all(json.loads(p)["dp"]["mechanism"] == "discrete_laplace" for p in issued["params"].to_list())
    # The owner raises and resets the budget.
    ident = an.whoami()["identity"]
    admin.set_budget(ident, dataset, 10.0)
    assert an.budget(dataset)["remaining"] == pytest.approx(7.0)
    admin.reset_budget(ident, dataset)
    assert an.budget(dataset)["epsilon_spent"] == 0.0
    with pytest.raises(gp.PermissionDenied):
        an.set_budget(ident, dataset, 100.0)


def test_grouped_sums_are_one_descriptor_all_or_nothing_with_dp_per_group(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    enc = _enc(dataset).with_columns(g=pl.Series([i % 4 for i in range(N)]))  # 4 groups of 10 rows
    an = _analyst(keyhost, admin, dataset, [gp.allow.aggregate("x", min_rows=5, epsilon=0.5, budget=2.0)])
    grouped = enc.group_by("g").agg(pl.col("x").ghost.sum()).sort("g")
    an.reset_stats()
    a = grouped.ghost.reveal(an)
    assert an.stats()["descriptors"] == 1  # one sums descriptor for the 4 groups
    assert a.height == 4 and a["x"].to_list() != [sum(range(g, N, 4)) for g in range(4)]  # noisy
    # disjoint groups, each with its own noise: parallel composition, one group's cost (0.5); the
    # same query again is the same noisy answer and charges nothing more
    assert an.budget(dataset)["epsilon_spent"] == pytest.approx(0.5)
    assert grouped.ghost.reveal(an).equals(a)
    assert an.budget(dataset)["epsilon_spent"] == pytest.approx(0.5)
    entries = _audit(admin, dataset, an).filter(pl.col("operation") == "sums").rows(named=True)
    assert len(entries) == 2  # each reveal is one audit entry, whatever its groups
    params = json.loads(entries[0]["params"])
    assert (params["groups"], params["group_rows"], entries[0]["rid_count"]) == (4, [10, 10, 10, 10], N)
    assert params["dp"]["composition"] == "parallel"
    # a group under min_rows refuses every group: nothing is revealed, nothing more is charged
    small = enc.with_columns(g=pl.Series([0] * 3 + [1] * (N - 3))).group_by("g").agg(pl.col("x").ghost.sum())
    with pytest.raises(gp.PermissionDenied, match="group . of 2: the aggregate covers 3 distinct rows"):
        small.ghost.reveal(an)
    assert an.budget(dataset)["epsilon_spent"] == pytest.approx(0.5)
    # other groupings are new answers (0.5 each) until the budget of 2.0 is spent; then refused whole
    for k in (2, 3, 5):
        enc.with_columns(g=pl.Series([i % k for i in range(N)])).group_by("g").agg(
            pl.col("x").ghost.sum()
        ).ghost.reveal(an)
    assert an.budget(dataset)["epsilon_spent"] == pytest.approx(2.0)
    with pytest.raises(gp.BudgetExhausted):
        enc.with_columns(g=pl.Series([i % 6 for i in range(N)])).group_by("g").agg(
            pl.col("x").ghost.sum()
        ).ghost.reveal(an)
    assert an.budget(dataset)["epsilon_spent"] == pytest.approx(2.0)


def test_replayed_and_forged_tokens_are_rejected(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    enc = _enc(dataset)
    an = _analyst(keyhost, admin, dataset, [gp.allow.aggregate("x")])
    old = an._token
    with pytest.raises(gp.AuthenticationError):
        gp.connect(keyhost.url, "gpt_" + "A" * 43)
    new = an.rotate_token()
    assert new != old and _sum(enc, an) == sum(range(N))
    with pytest.raises(gp.AuthenticationError, match="revoked"):
        gp.connect(keyhost.url, old)
    log = _audit(admin, dataset, an)
    assert log.height >= 1
    rot = admin.audit(identity=an.whoami()["identity"]).filter(pl.col("operation") == "token.rotate")
    assert rot.height == 1


def test_token_used_on_another_dataset(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    other = admin.create_dataset(dataset.name + "_other", population=dataset.name + "_other")
    enc_other = _enc(other)
    _enc(dataset)
    an = _analyst(keyhost, admin, dataset, [gp.allow.aggregate("x")])
    # a dataset it holds no grant on is not described (no enumeration), but the owner sees the attempt
    with pytest.raises(gp.PermissionDenied, match=f"holds no grant on dataset id {other.id},") as e:
        _sum(enc_other, an)
    assert other.name not in str(e.value)
    assert e.value.missing_grant == {"operation": "aggregate", "dataset": f"id {other.id}", "column": None}
    assert _refused(_audit(admin, other, an), "permission_denied") == 1


def test_per_row_decrypt_without_grant(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    enc = _enc(dataset)
    an = _analyst(keyhost, admin, dataset, [gp.allow.aggregate("x")])
    with pytest.raises(gp.PermissionDenied, match="decrypt"):
        enc.select(pl.col("x").ghost.decrypt()).ghost.reveal(an)
    log = _audit(admin, dataset, an)
    assert log.filter((pl.col("operation") == "decrypt") & (pl.col("decision") == "refused")).height == 1


def test_compare_token_outside_the_grant(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    enc = _enc(dataset, compare=True)
    meta = enc["x"].dtype.meta()  # type: ignore[attr-defined]
    an = _analyst(keyhost, admin, dataset, [gp.allow.compare("x", constants=[50, 60], max_constants=1)])

    def ask(c: int) -> list[dict[str, Any]]:
        d = {"op": "compare", "dataset_id": meta["dataset_id"], "column_id": meta["column_id"], "epoch": meta["epoch"]}
        return an.answer_keys([{**d, "constant": c}])

    assert ask(50)[0]["token"]
    assert ask(50)[0]["receipt"]["entry_hash"]
    with pytest.raises(gp.PermissionDenied, match="constant 70") as e:
        ask(70)
    assert e.value.reason == "constant_not_allowed"
    with pytest.raises(gp.PermissionDenied) as e:
        ask(60)
    assert e.value.reason == "max_constants"
    log = _audit(admin, dataset, an).filter(pl.col("operation") == "compare")
    assert sorted(json.loads(p)["constant"] for p in log["params"].to_list()) == [50, 50, 60, 70]
    assert _refused(log, "constant_not_allowed") == 1 and _refused(log, "max_constants") == 1


# -- tamper tests on the SQLite file ------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ghostpii.cli", *args], capture_output=True, text=True, timeout=60)


def _history(tmp_path: Path) -> tuple[Path, Path]:
    """A stopped keyhost with some history, and a checkpoint of it."""
    data = tmp_path / "kh"
    kh = KeyhostProcess(data)
    try:
        admin = kh.admin()
        ds = admin.create_dataset("t")
        enc = _enc(ds)
        an = _analyst(kh, admin, ds, [gp.allow.aggregate("x", min_rows=5)])
        _sum(enc, an)
        with pytest.raises(gp.PermissionDenied):
            _sum(enc.head(2), an)
        cp = tmp_path / "cp.json"
        r = _cli("audit", "checkpoint", "--url", kh.url, "--token", kh.admin_token)
        assert r.returncode == 0, r.stderr
        cp.write_text(r.stdout)
        assert json.loads(r.stdout)["tree_size"] > 3
    finally:
        kh.stop()
    return data, cp


def _verify(data: Path, cp: Path | None = None) -> tuple[int, dict[str, Any]]:
    args = ["audit", "verify", "--data", str(data)] + (["--checkpoint", str(cp)] if cp else [])
    r = _cli(*args)
    return r.returncode, json.loads(r.stdout)


def _sql(data: Path, *stmts: str) -> None:
    con = sqlite3.connect(data / "keyhost.db")
    for s in stmts:
        con.execute(s)
    con.commit()
    con.close()


def test_tamper_edit_delete_truncate_are_detected_by_the_chain(tmp_path: Path) -> None:
    data, _ = _history(tmp_path)
    assert _verify(data)[0] == 0
    _sql(data, "UPDATE audit SET decision = 'issued' WHERE decision = 'refused'")
    rc, rep = _verify(data)
    assert rc == 1 and any("edited" in p["problem"] for p in rep["problems"])

    data, _ = _history(tmp_path / "b")
    _sql(data, "DELETE FROM audit WHERE idx = 3")
    rc, rep = _verify(data)
    assert rc == 1 and any("gap" in p["problem"] for p in rep["problems"])

    data, _ = _history(tmp_path / "c")
    _sql(data, "DELETE FROM audit WHERE idx = (SELECT MAX(idx) FROM audit)")
    rc, rep = _verify(data)
    assert rc == 1 and any("recorded" in p["problem"] for p in rep["problems"])


def test_tamper_is_detected_by_a_checkpoint(tmp_path: Path) -> None:
    data, cp = _history(tmp_path)
    rc, rep = _verify(data, cp)
    assert rc == 0, rep
    # Truncation with the recorded count fixed: the chain alone is fooled, the checkpoint is not.
    _sql(
        data,
        "DELETE FROM audit WHERE idx = (SELECT MAX(idx) FROM audit)",
        "UPDATE meta SET value = (SELECT MAX(idx) FROM audit) WHERE key = 'audit_last_index'",
    )
    assert _verify(data)[0] == 0
    rc, rep = _verify(data, cp)
    assert rc == 1 and any("truncated" in p["problem"] for p in rep["problems"])
    # A forged checkpoint fails its signature.
    data, cp = _history(tmp_path / "b")
    forged = json.loads(cp.read_text())
    forged["tree_size"] -= 1
    cp.write_text(json.dumps(forged))
    rc, rep = _verify(data, cp)
    assert rc == 1 and any("signature" in p["problem"] for p in rep["problems"])


# -- load and faults --------------------------------------------------------------------------------


def _pool(admin: gp.Session, ds: gp.Dataset, groupings: int) -> list[dict[str, Any]]:
    """Distinct sum descriptors (4 per grouping) over a 200-row column, as the plugin builds them."""
    from ghostpii.reveal import sum_descriptors

    n = 200
    cols = {f"g{k}": [random.Random(k * 1000 + r).randrange(4) for r in range(n)] for k in range(groupings)}
    df = pl.DataFrame({"x": [r % 50 for r in range(n)], **cols})
    enc = gp.encrypt(df, ds, {"x": gp.integer(bounds=(0, 100))})
    out: dict[str, dict[str, Any]] = {}
    for k in range(groupings):
        sealed = enc.group_by(f"g{k}").agg(pl.col("x").ghost.sum())
        for d in sum_descriptors(sealed["x"]):
            out[d["rids"]] = d
    return list(out.values())


def _post(url: str, token: str, descs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r = requests.post(
        url + "/v1/answer-keys", json={"requests": descs}, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    r.raise_for_status()
    return r.json()["results"]  # type: ignore[no-any-return]


def _dp_spent(eps: float, n: int, delta_total: float = 1e-5) -> float:
    """ε spent by n Laplace answers of ε each: the smaller of basic composition and zCDP at δ/2
    (docs/privacy.md, "Budgets")."""
    rho = n * eps * eps / 2
    return min(n * eps, rho + 2 * math.sqrt(rho * math.log(2 / delta_total)))


def _issued_requests(log: pl.DataFrame) -> set[str]:
    issued = log.filter((pl.col("operation") == "sum") & (pl.col("decision") == "issued"))
    return {json.loads(p)["dp"]["request"] for p in issued["params"].to_list()}


def test_load_16_clients_no_lost_entries_no_overspend(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    pool = _pool(admin, dataset, 150)
    assert len(pool) >= 550
    eps, budget = 0.1, 13.0
    room = max(n for n in range(1, 10_000) if _dp_spent(eps, n) <= budget)  # 466 distinct answers (pool ≥ 550)
    token = admin.grant("loader", dataset, [gp.allow.aggregate("x", epsilon=eps, budget=budget)])
    assert token is not None
    before = admin.verify_audit()["entries"]
    clients, per_client = 16, 200
    outcomes: list[list[dict[str, Any]]] = [[] for _ in range(clients)]

    def run(t: int) -> None:
        for i in range(per_client):
            outcomes[t].extend(_post(keyhost.url, token, [pool[(t * 37 + i * 3) % len(pool)]]))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    results = [r for o in outcomes for r in o]
    assert len(results) == clients * per_client
    indices = [admin.check_receipt(r["receipt"])["audit_index"] for r in results]
    assert len(set(indices)) == len(indices), "duplicated audit entries"
    v = admin.verify_audit()
    assert v["ok"], v["problems"]
    assert v["entries"] >= before + clients * per_client
    log = admin.audit(dataset, identity="loader", limit=100_000)
    assert log.filter(pl.col("operation") == "sum").height == clients * per_client, "lost audit entries"
    distinct = _issued_requests(log)
    state = admin.budget(dataset, "loader")
    assert state["epsilon_spent"] <= budget + 1e-9, "over-spent"
    assert state["epsilon_spent"] == pytest.approx(_dp_spent(eps, len(distinct)))
    assert len(distinct) == room
    assert all(r["ok"] or r["reason"] == "budget_exhausted" for r in results)
    # Repeats of answered requests got the same key.
    keys: dict[str, str] = {}
    for t in range(clients):
        for i, r in enumerate(outcomes[t]):
            if r["ok"]:
                rid = pool[(t * 37 + i * 3) % len(pool)]["rids"]
                assert keys.setdefault(rid, r["key"]) == r["key"]


def test_kill_9_mid_load_leaves_a_valid_log_and_a_consistent_ledger(tmp_path: Path) -> None:
    data = tmp_path / "kh"
    kh = KeyhostProcess(data)
    admin = kh.admin()
    ds = admin.create_dataset("k9")
    pool = _pool(admin, ds, 40)
    eps = 0.01
    token = admin.grant("victim", ds, [gp.allow.aggregate("x", epsilon=eps, budget=100.0)])
    assert token is not None
    stop = threading.Event()
    sent = [0]

    def run(t: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                _post(kh.url, token, [pool[(t * 11 + i) % len(pool)]])
                sent[0] += 1
            except (requests.RequestException, ValueError):
                return
            i += 1

    threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    while sent[0] < 200:
        threading.Event().wait(0.01)
    os.kill(kh.proc.pid, signal.SIGKILL)
    kh.proc.wait(timeout=10)
    stop.set()
    for th in threads:
        th.join()
    kh2 = KeyhostProcess(data)
    try:
        admin2 = kh2.admin()
        v = admin2.verify_audit()
        assert v["ok"], v["problems"]
        log = admin2.audit("k9", identity="victim", limit=100_000)
        assert log.filter(pl.col("operation") == "sum").height >= 200
        state = admin2.budget("k9", "victim")
        assert state["epsilon_spent"] == pytest.approx(_dp_spent(eps, len(_issued_requests(log))))
    finally:
        kh2.stop()
