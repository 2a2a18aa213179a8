"""The audit log is listed newest first, page by page, and says when a list is partial."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl

import ghostpii as gp
from conftest import KeyhostProcess


def _fill(admin: gp.Session, ds: gp.Dataset, n: int) -> None:
    for i in range(n):
        admin.grant(f"reader{i % 3}", ds, [gp.allow.aggregate(f"c{i}")], issue_token=False)


def test_pages_are_newest_first_and_count_the_total(admin: gp.Session, dataset: gp.Dataset) -> None:
    _fill(admin, dataset, 12)
    full = admin.audit(dataset)
    idx = full["index"].to_list()
    assert idx == sorted(idx, reverse=True), "newest first"
    assert full.height >= 12
    page = admin.audit_page(dataset, limit=5)
    assert page.entries["index"].to_list() == idx[:5]
    assert page.total == full.height and page.partial
    assert page.next == idx[4]
    assert page.summary().startswith(f"showing 5 of {full.height} entries")
    second = admin.audit_page(dataset, limit=5, before=page.next)
    assert second.entries["index"].to_list() == idx[5:10]
    # walking every page gives every entry exactly once
    seen, cursor = [], None
    while True:
        p = admin.audit_page(dataset, limit=4, before=cursor)
        seen += p.entries["index"].to_list()
        if p.next is None:
            break
        cursor = p.next
    assert seen == idx
    last = admin.audit_page(dataset, limit=full.height)
    assert last.next is None and not last.partial
    oldest = admin.audit_page(dataset, limit=3, oldest_first=True)
    assert oldest.entries["index"].to_list() == sorted(idx)[:3]
    assert (
        admin.audit_page(dataset, limit=3, oldest_first=True, before=oldest.next).entries["index"].to_list()
        == sorted(idx)[3:6]
    )


def test_audit_reads_past_one_page(admin: gp.Session, dataset: gp.Dataset, monkeypatch: object) -> None:
    import ghostpii.client as client

    _fill(admin, dataset, 7)
    everything = admin.audit_page(dataset, limit=1000)
    monkeypatch.setattr(client, "AUDIT_PAGE", 3)  # type: ignore[attr-defined]
    assert admin.audit(dataset)["index"].to_list() == everything.entries["index"].to_list()
    assert admin.audit(dataset, limit=5)["index"].to_list() == everything.entries["index"].to_list()[:5]


def test_cli_audit_list_says_when_it_is_partial(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    _fill(admin, dataset, 6)
    env = dict(os.environ, GHOSTPII_URL=keyhost.url, GHOSTPII_TOKEN=keyhost.admin_token)
    total = admin.audit_page(dataset, limit=1).total
    newest = admin.audit_page(dataset, limit=3).entries["index"].to_list()

    def cli(*args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "ghostpii.cli", "audit", "list", "--dataset", dataset.name, *args],
                           capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
        assert r.returncode == 0, r.stderr
        return r.stdout

    out = cli("--limit", "3")
    assert f"showing 3 of {total} entries" in out
    assert f"--before {newest[2]}" in out
    js = json.loads(cli("--limit", "3", "--json"))
    assert [e["index"] for e in js["entries"]] == newest
    assert js["total"] == total and js["next"] == newest[2]
    older = json.loads(cli("--limit", "2", "--before", str(newest[2]), "--json"))
    assert [e["index"] for e in older["entries"]] == pl.Series(
        admin.audit_page(dataset, limit=2, before=newest[2]).entries["index"]
    ).to_list()
