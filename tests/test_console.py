"""The owner's console at /console, in a real browser: Debian's Chromium driven by Playwright.

Each test signs in with a real token against the real keyhost process, walks pages, submits
forms, and checks through the JSON API (``gp.connect``) that what the console did took effect.
Every page visited is screenshotted under the test's tmp dir; on failure the paths are listed
in the report (conftest.py). Without Chromium these tests fail: they are never skipped.
"""

from __future__ import annotations

import re
import shutil
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import requests
from playwright.sync_api import Browser, Page, sync_playwright

import ghostpii as gp
from conftest import KeyhostProcess

HOSTILE = '<script>alert("x")</script>&\''


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("the console tests need Debian's chromium: apt-get install -y chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=exe, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield b
        b.close()


class Console:
    """A browser page on the console, screenshotting every page it shows."""

    def __init__(self, page: Page, url: str, shots: list[Path], shot_dir: Path) -> None:
        self.page, self.url, self.shots, self.dir = page, url, shots, shot_dir
        self.dialogs: list[str] = []
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def shot(self, name: str) -> None:
        path = self.dir / f"{len(self.shots):02d}-{re.sub(r'[^a-z0-9]+', '-', name.lower())}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)

    def go(self, path: str) -> Any:
        resp = self.page.goto(self.url + path)
        self.shot(path)
        return resp

    def sign_in(self, token: str) -> None:
        self.go("/console")
        self.page.fill("#token", token)
        self.page.click("#sign-in")
        self.shot("after sign-in")

    def text(self) -> str:
        return self.page.inner_text("main")


@pytest.fixture()
def console(
    browser: Browser, keyhost: KeyhostProcess, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Console]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    shots: list[Path] = []
    shot_dir = tmp_path / "screenshots"
    shot_dir.mkdir()
    request.node.console_screenshots = shots
    request.node.console_page = page
    yield Console(page, keyhost.url, shots, shot_dir)
    ctx.close()


def _unique(prefix: str) -> str:
    return f"{prefix}_{int(time.time() * 1e6)}"


def _dataset(admin: gp.Session, prefix: str) -> gp.Dataset:
    """A fresh dataset declared to hold its own population (exact answers on its columns are not
    tied to the admin's other datasets with the same column names; docs/privacy.md)."""
    name = _unique(prefix)
    return admin.create_dataset(name, population=name)


def _encrypted(ds: gp.Dataset) -> pl.DataFrame:
    df = pl.DataFrame({"x": list(range(40))})
    return gp.encrypt(df, ds, {"x": gp.integer(bounds=(0, 100))})


def _sum(enc: pl.DataFrame, session: gp.Session) -> Any:
    return enc.select(pl.col("x").ghost.sum()).ghost.reveal(session)["x"][0]


def test_admin_walks_every_page_and_manages_grants_tokens_and_budgets(
    console: Console, keyhost: KeyhostProcess, admin: gp.Session
) -> None:
    ds = _dataset(admin, "console")
    enc = _encrypted(ds)
    analyst = _unique("an")
    c = console
    c.sign_in(keyhost.admin_token)
    assert c.page.inner_text("#whoami") == "admin"
    assert ds.name in c.text()

    # Identities and tokens: create an analyst and issue its token (shown once).
    c.go("/console/identities")
    c.page.fill("#identity-name", analyst)
    c.page.select_option("#identity-role", "member")
    c.page.click("#identity-create")
    c.shot("identity created")
    assert f"identity '{analyst}' created (role member)" in c.text()
    assert any(i["name"] == analyst and i["role"] == "member" for i in admin.identities())
    c.page.select_option("#token-identity", analyst)
    c.page.fill("#token-days", "2")
    c.page.click("#token-issue")
    c.shot("token issued")
    token = c.page.inner_text("#new-token").strip()
    assert token.startswith("gpt_")
    c.go("/console/identities")
    assert c.page.locator("#new-token").count() == 0, "a new token is shown only once"
    an = gp.connect(keyhost.url, token)
    assert an.whoami()["identity"] == analyst
    with pytest.raises(gp.PermissionDenied):
        _sum(enc, an)

    # Grants: a refused form comes back with the API's message and the values entered.
    c.go(f"/console/datasets/{ds.name}/grants")
    c.page.fill("#grant-identity", analyst)
    c.page.select_option("#grant-column", "x")
    c.page.select_option("#grant-operation", "decrypt")
    c.page.fill("#grant-min_rows", "5")
    c.page.click("#grant-add")
    c.shot("grant refused")
    assert "'min_rows' are not supported by 'decrypt' grants" in c.text()
    assert c.page.input_value("#grant-min_rows") == "5"
    assert admin.grants(ds, identity=analyst) == []
    # ... and an accepted one takes effect through the API at once.
    c.page.select_option("#grant-operation", "aggregate")
    c.page.fill("#grant-min_rows", "5")
    c.page.fill("#grant-epsilon", "")
    c.page.click("#grant-add")
    c.shot("grant added")
    assert re.search(rf"grant \d+ added: '{analyst}' may aggregate column 'x'", c.text())
    (g,) = admin.grants(ds, identity=analyst)
    assert g["operation"] == "aggregate" and g["params"]["min_rows"] == 5
    assert _sum(enc, an) == sum(range(40))
    with pytest.raises(gp.PermissionDenied, match="at least 5"):
        _sum(enc.head(2), an)

    # Revoke in the console: the API refuses the analyst from then on.
    c.page.click(f"#revoke-{g['grant_id']}")
    c.shot("grant revoked")
    assert f"grant {g['grant_id']} revoked" in c.text()
    assert admin.grants(ds, identity=analyst) == []
    with pytest.raises(gp.PermissionDenied, match="no 'aggregate' grant|holds no grant on dataset"):
        _sum(enc.slice(3), an)

    # The dataset page: columns and the activity chart (issued and refused answer keys).
    c.go(f"/console/datasets/{ds.name}")
    row = c.page.locator("table tbody tr").first.inner_text()
    assert row.startswith("x") and "int" in row and "num" in row
    label = c.page.get_attribute("#activity-chart", "aria-label") or ""
    assert re.fullmatch(r"answer keys over time: 1 issued, [1-9]\d* refused", label), label
    assert c.page.locator("#activity-chart rect.refused").count() > 0

    # Budgets: set and reset through the console, read back through the API.
    admin.grant(analyst, ds, [gp.allow.aggregate("x", epsilon=1.0)], issue_token=False)
    c.go(f"/console/datasets/{ds.name}/budgets")
    assert analyst in c.page.inner_text("table")
    form = c.page.locator("form.card")
    form.locator("input[name=identity]").fill(analyst)
    form.locator("input[name=total]").fill("2.5")
    form.locator("button").click()
    c.shot("budget set")
    assert f"budget of '{analyst}' set: ε total 2.5" in c.text()
    assert admin.budget(ds, analyst)["epsilon_total"] == pytest.approx(2.5)
    _sum(enc.slice(1), an)
    assert admin.budget(ds, analyst)["epsilon_spent"] == pytest.approx(1.0)
    c.go(f"/console/datasets/{ds.name}/budgets")
    assert "ε 1 of 2.5" in c.page.inner_html("#budget-chart")
    c.page.locator("tr", has_text=analyst).locator("button.danger").click()
    c.shot("budget reset")
    assert admin.budget(ds, analyst)["epsilon_spent"] == 0.0

    # The audit log: filters, refusals highlighted, receipts.
    c.go(f"/console/audit?dataset={ds.name}&identity={analyst}&decision=refused")
    rows = c.page.locator("tbody tr")
    assert rows.count() >= 2
    assert all("refused" in (rows.nth(i).get_attribute("class") or "") for i in range(rows.count()))
    log = admin.audit(ds, identity=analyst).filter(pl.col("decision") == "refused")
    assert rows.count() == log.height
    first = rows.first
    first.locator("summary").click()
    index = int(first.locator("td").first.inner_text())
    assert f"receipt #{index}" in first.inner_text()
    assert log.filter(pl.col("index") == index).height == 1
    c.go(f"/console/audit?dataset={ds.name}&operation=grant.create")
    ops = c.page.locator("tbody tr td:nth-child(6)").all_inner_texts()
    assert ops and set(ops) == {"grant.create"}
    c.go("/console/audit?since=2999-01-01T00:00")
    assert "No entries match" in c.text()
    c.go("/console/audit?since=yesterday")
    assert "from must be a time" in c.text()

    # Checkpoint and chain verification.
    c.go("/console/checkpoint")
    assert "the hash chain is intact" in c.page.inner_text("#chain-status")
    assert "signature valid" in c.page.inner_text("#checkpoint-status")
    assert keyhost.admin().audit_checkpoint()["public_key"] in c.page.inner_text("#checkpoint-json")
    assert c.dialogs == []


def test_paging_walks_the_whole_log(console: Console, keyhost: KeyhostProcess, admin: gp.Session) -> None:
    ds = _dataset(admin, "paging")
    admin.grant(_unique("pg"), ds, [gp.allow.aggregate("x")] * 55, issue_token=False)
    console.sign_in(keyhost.admin_token)
    console.go(f"/console/audit?dataset={ds.name}")
    seen: list[int] = []
    while True:
        seen += [int(t) for t in console.page.locator("tbody tr td:first-child").all_inner_texts()]
        nxt = console.page.locator("#page-older")
        if nxt.count() == 0:
            break
        nxt.first.click()
        console.shot("older page")
    expected = admin.audit(ds)["index"].to_list()
    assert len(seen) == len(expected) == 56
    assert seen == sorted(expected, reverse=True)


def test_analyst_token_gets_a_clear_refusal(console: Console, keyhost: KeyhostProcess, admin: gp.Session) -> None:
    ds = _dataset(admin, "refuse")
    token = admin.grant(_unique("analyst"), ds, [gp.allow.aggregate("x")])
    assert token is not None
    console.sign_in(token)
    assert "the console is for admins and dataset owners" in console.page.inner_text("#refused")
    assert not [ck for ck in console.page.context.cookies() if ck["name"] == "gp_console"]
    resp = console.go("/console/datasets")
    assert resp.status == 401 and console.page.locator("#token").count() == 1
    bad = console
    bad.sign_in("gpt_" + "A" * 43)
    assert "not recognised" in bad.text()


def test_owner_sees_and_manages_only_its_datasets(console: Console, keyhost: KeyhostProcess, admin: gp.Session) -> None:
    owner = _unique("owner")
    admin.create_identity(owner, role="owner")
    token = admin.create_token(owner)
    mine = gp.connect(keyhost.url, token).create_dataset(_unique("mine"))
    theirs = admin.create_dataset(_unique("theirs"))
    console.sign_in(token)
    text = console.text()
    assert mine.name in text and theirs.name not in text
    # (issue 20) another owner's dataset is refused exactly as a name nobody uses
    resp = console.go(f"/console/datasets/{theirs.name}/grants")
    assert resp.status == 404
    refusal = console.text().replace(theirs.name, "NAME")
    console.go("/console/datasets/no-such-dataset/grants")
    assert console.text().replace("no-such-dataset", "NAME") == refusal
    assert "does not exist on this keyhost or is not visible" in refusal
    console.go("/console/audit")
    datasets = set(console.page.locator("tbody tr td:nth-child(4)").all_inner_texts())
    assert datasets == {mine.name}
    console.go(f"/console/audit?dataset={theirs.name}")
    assert "does not exist on this keyhost or is not visible" in console.text()
    console.go("/console/identities")
    # (issue 20) an owner manages its own analysts: the page lists only them
    assert console.page.locator("#identities-scope").count() == 1
    assert "No identities." in console.text()
    # Rotating the owner's own token: shown once, the old one is revoked, the session goes on.
    console.page.click("#rotate")
    console.shot("rotated")
    new = console.page.inner_text("#new-token").strip()
    assert new != token and gp.connect(keyhost.url, new).whoami()["identity"] == owner
    with pytest.raises(gp.AuthenticationError, match="revoked"):
        gp.connect(keyhost.url, token)
    console.go("/console/datasets")
    assert console.page.inner_text("#whoami") == owner


def test_two_organisations_owner_manages_its_analysts(
    console: Console, keyhost: KeyhostProcess, admin: gp.Session
) -> None:
    """Issue 20: an owner creates an analyst, issues its token, grants to it and revokes the token in
    the console, without the admin; another owner sees none of it."""
    clinic, insurer = _unique("clinic"), _unique("insurer")
    admin.create_identity(clinic, role="owner")
    admin.create_identity(insurer, role="owner")
    c_tok, i_tok = admin.create_token(clinic), admin.create_token(insurer)
    owner = gp.connect(keyhost.url, c_tok)
    ds = owner.create_dataset("visits")  # a name another owner may use too
    gp.connect(keyhost.url, i_tok).create_dataset("visits")
    enc = _encrypted(ds)
    c = console
    c.sign_in(c_tok)
    c.go("/console/identities")
    assert c.page.locator("#identity-role option").all_inner_texts() == ["member (analyst)"]
    c.page.fill("#identity-name", "worker")
    c.page.click("#identity-create")
    c.shot("owner created its worker")
    assert f"identity '{clinic}/worker' created (role member)" in c.text()
    assert [i["name"] for i in owner.identities()] == [f"{clinic}/worker"]
    c.page.select_option("#token-identity", f"{clinic}/worker")
    c.page.click("#token-issue")
    c.shot("owner issued its worker a token")
    token = c.page.inner_text("#new-token").strip()
    worker = gp.connect(keyhost.url, token)
    assert worker.whoami()["identity"] == f"{clinic}/worker"
    with pytest.raises(gp.PermissionDenied):
        _sum(enc, worker)
    # the grant names the analyst by its short name
    c.go(f"/console/datasets/{ds.name}/grants")
    c.page.fill("#grant-identity", "worker")
    c.page.select_option("#grant-column", "x")
    c.page.select_option("#grant-operation", "aggregate")
    c.page.fill("#grant-min_rows", "5")
    c.page.click("#grant-add")
    c.shot("owner granted its worker")
    assert re.search(rf"grant \d+ added: '{clinic}/worker' may aggregate column 'x'", c.text())
    assert _sum(enc, worker) == sum(range(40))
    # revoke the worker's token in the console
    c.go("/console/identities")
    (t,) = owner.tokens()
    c.page.click(f"form[action='/console/tokens/{t['token_id']}/revoke'] button")
    c.shot("owner revoked its worker's token")
    assert f"token {t['token_id']} revoked" in c.text()
    with pytest.raises(gp.AuthenticationError, match="revoked"):
        gp.connect(keyhost.url, token)
    # the audit page of the owner shows its own "visits" only, with the identity actions
    c.go("/console/audit")
    ops = set(c.page.locator("tbody tr td:nth-child(6)").all_inner_texts())
    assert {"identity.create", "token.create", "token.revoke", "grant.create"} <= ops
    assert insurer not in c.page.inner_text("tbody")
    # the other owner's console shows none of it
    c.page.click("#logout")
    c.sign_in(i_tok)
    assert c.page.inner_text("#whoami") == insurer
    c.go("/console/identities")
    assert f"{clinic}/worker" not in c.text() and "No identities." in c.text()
    c.go("/console/audit")
    assert clinic not in c.page.inner_text("main")
    assert c.dialogs == []


def test_hostile_names_are_escaped(console: Console, keyhost: KeyhostProcess, admin: gp.Session) -> None:
    name = HOSTILE + _unique("")
    ds = admin.create_dataset(name)
    admin.grant(HOSTILE, ds, [gp.allow.decrypt("<img src=x onerror=alert(1)>")], issue_token=False)
    console.sign_in(keyhost.admin_token)
    assert name in console.text()
    console.page.get_by_text(name).first.click()
    console.shot("hostile dataset")
    assert console.page.locator("h1").inner_text() == f"Dataset {name}"
    console.go(f"/console/audit?dataset={urllib.parse.quote(name, safe='')}")
    assert console.page.locator("tbody tr").count() >= 2
    for path in ("/console/datasets", f"/console/datasets/{urllib.parse.quote(name, safe='')}/grants"):
        console.go(path)
        html = console.page.content()
        assert "<script>alert" not in html and "<img src=x" not in html
        assert console.page.locator("main script, main img").count() == 0
    assert console.dialogs == []


def _requests_session(url: str, token: str) -> tuple[requests.Session, str, str]:
    """Sign in without a browser; returns the session, its CSRF token and the login's Set-Cookie."""
    s = requests.Session()
    r = s.get(url + "/console/login")
    m = re.search(r'name="login_csrf" value="([0-9a-f]+)"', r.text)
    assert m is not None
    r = s.post(url + "/console/login", data={"token": token, "login_csrf": m.group(1)}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/datasets"
    set_cookie = r.headers["set-cookie"]
    page = s.get(url + "/console/identities").text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert csrf is not None
    return s, csrf.group(1), set_cookie


def test_forms_without_the_sessions_csrf_token_are_refused(keyhost: KeyhostProcess, admin: gp.Session) -> None:
    ds = _dataset(admin, "csrf")
    _encrypted(ds)
    who = _unique("victim")
    admin.create_identity(who)
    s, csrf, _ = _requests_session(keyhost.url, keyhost.admin_token)
    url = f"{keyhost.url}/console/datasets/{ds.name}/grants"
    form = {"identity": who, "column": "x", "operation": "decrypt"}
    for sent in ({}, {"csrf": "0" * 64}, {"csrf": csrf[:-1]}):
        r = s.post(url, data={**form, **sent}, allow_redirects=False)
        assert r.status_code == 403 and "CSRF token is missing or wrong" in r.text
    assert admin.grants(ds, identity=who) == []
    # Another session's token does not do either.
    other, other_csrf, _ = _requests_session(keyhost.url, keyhost.admin_token)
    assert other_csrf != csrf
    assert s.post(url, data={**form, "csrf": other_csrf}, allow_redirects=False).status_code == 403
    # The sign-in form has its own double-submit token.
    r = requests.post(keyhost.url + "/console/login", data={"token": keyhost.admin_token})
    assert r.status_code == 403
    # With the right token the same form works.
    r = s.post(url, data={**form, "csrf": csrf}, allow_redirects=False)
    assert r.status_code == 303
    assert len(admin.grants(ds, identity=who)) == 1


def test_the_embedded_keyhost_serves_the_console_too(tmp_path: Path) -> None:
    with gp.Keyhost.local(tmp_path / "kh") as kh:
        r = requests.get(kh.url + "/console", allow_redirects=True)
        assert r.status_code == 401 and 'name="login_csrf"' in r.text
        s, _, _ = _requests_session(kh.url, (tmp_path / "kh" / "admin.token").read_text().strip())
        assert "Every dataset of this keyhost." in s.get(kh.url + "/console/datasets").text


def test_cookie_flags_headers_and_logout(console: Console, keyhost: KeyhostProcess) -> None:
    r = requests.get(keyhost.url + "/console/login")
    assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=Strict" in r.headers["set-cookie"]
    assert "default-src 'none'" in r.headers["content-security-policy"]
    s, csrf, set_cookie = _requests_session(keyhost.url, keyhost.admin_token)
    assert re.search(r"gp_console=[0-9a-f]{64}; Path=/console; HttpOnly; SameSite=Strict", set_cookie), set_cookie
    (session_cookie,) = [ck for ck in s.cookies if ck.name == "gp_console"]
    assert session_cookie.path == "/console"
    assert keyhost.admin_token not in session_cookie.value
    # Nothing works without a valid session.
    assert requests.get(keyhost.url + "/console/datasets").status_code == 401
    forged = requests.get(keyhost.url + "/console/datasets", cookies={"gp_console": "f" * 64})
    assert forged.status_code == 401 and "session has ended" in forged.text
    # Sign out in the browser: back to the sign-in page, and the pages are closed.
    console.sign_in(keyhost.admin_token)
    console.page.click("#logout")
    console.shot("signed out")
    assert console.page.locator("#token").count() == 1
    assert console.go("/console/audit").status == 401
    # Signing out one session leaves others alone; a replayed cookie after logout is dead.
    r = s.post(keyhost.url + "/console/logout", data={"csrf": csrf}, allow_redirects=False)
    assert r.status_code == 303
    replay = requests.get(keyhost.url + "/console/datasets", cookies={"gp_console": session_cookie.value or ""})
    assert replay.status_code == 401


def test_a_revoked_token_ends_its_console_session(console: Console, keyhost: KeyhostProcess, admin: gp.Session) -> None:
    owner = _unique("leaver")
    admin.create_identity(owner, role="owner")
    token = admin.create_token(owner)
    console.sign_in(token)
    assert console.page.inner_text("#whoami") == owner
    (t,) = admin.tokens(owner)
    since = datetime.now(UTC)
    admin.revoke_token(str(t["token_id"]))
    resp = console.go("/console/datasets")
    assert resp.status == 401 and "the token was revoked" in console.text()
    assert console.page.locator("#token").count() == 1
    refused = admin.audit(since=since, limit=100_000).filter(
        (pl.col("operation") == "auth") & (pl.col("reason") == "token_revoked")
    )
    assert any("/console/datasets" in p for p in refused["params"].to_list())
