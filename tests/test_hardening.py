"""Attack suite, part 2 (issue 7 §2, §4): DP that cannot be averaged away, token rotation that
never extends a token's life, audit proofs that reveal nothing about other identities' entries,
and text ciphertext that does not reveal the plaintext's exact length. Each test runs against a
real keyhost process and fails if the attack it reproduces works again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import ghostpii as gp
from conftest import KeyhostProcess

N = 40


def _enc(ds: gp.Dataset, compare: bool = False) -> pl.DataFrame:
    df = pl.DataFrame({"age": [20 + i for i in range(N)]})
    return gp.encrypt(df, ds, {"age": gp.integer(bounds=(0, 120), compare=compare)})


def _analyst(keyhost: KeyhostProcess, admin: gp.Session, ds: gp.Dataset, allows: list[gp.allow.Allow]) -> gp.Session:
    token = admin.grant(f"an_{ds.name}", ds, allows)
    assert token is not None
    return gp.connect(keyhost.url, token)


def _weighted(enc: pl.DataFrame, w: int, session: gp.Session) -> Any:
    return enc.select(gp.linear_sum({"age": w}).alias("s")).ghost.reveal(session)["s"][0]


def _averaging_attack(enc: pl.DataFrame, an: gp.Session, tries: int) -> int:
    """Ask Σ w·age for w = 1, 2, … (each a fresh request with fresh noise); count the answers."""
    answered = 0
    with pytest.raises(gp.BudgetExhausted, match="budget of this identity") as e:
        for w in range(1, tries + 1):
            _weighted(enc, w, an)
            answered += 1
    assert e.value.reason == "budget_exhausted"
    return answered


# -- §2 DP cannot be averaged away ---------------------------------------------------------------


def test_dp_grant_without_budget_is_capped_by_the_keyhost_default(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    """The issue's reproduction (80,000 answers of Σ w·age recovered one age), scaled down:
    a DP grant without ``budget`` is no longer unlimited."""
    enc = _enc(dataset)
    an = _analyst(keyhost, admin, dataset, [gp.allow.aggregate("age", epsilon=0.25)])
    ident = an.whoami()["identity"]
    # The effective budget is visible in the grant listing and in session.budget().
    (g,) = admin.grants(dataset, ident)
    assert g["effective_budget"] == {"epsilon": 1.0, "delta": 1e-5, "source": "keyhost_default"}
    assert an.grants(dataset)[0]["effective_budget"]["epsilon"] == 1.0
    answered = _averaging_attack(enc, an, 200)
    assert answered == 4  # ε = 0.25 each under the default total ε = 1 (basic composition)
    st = an.budget(dataset)
    assert st["epsilon_total"] == 1.0 and st["total_source"] == "keyhost_default"
    assert st["epsilon_spent"] == pytest.approx(1.0) and st["remaining"] == pytest.approx(0.0)
    assert st["answers"] == 4


def test_one_set_budget_caps_gaussian_answers(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    """The issue's reproduction: 200 Gaussian (δ) answers after set_budget(..., 2.0) all passed,
    because ε and ρ were separate ledgers. Now one (ε, δ) total caps every mechanism."""
    enc = _enc(dataset)
    an = _analyst(keyhost, admin, dataset, [gp.allow.aggregate("age", epsilon=1.0, delta=1e-6, budget=1000)])
    ident = an.whoami()["identity"]
    admin.set_budget(ident, dataset, 2.0)
    answered = _averaging_attack(enc, an, 200)
    assert 1 <= answered <= 4, answered
    st = an.budget(dataset)
    assert st["total_source"] == "set" and st["epsilon_total"] == 2.0
    assert st["epsilon_spent"] <= 2.0 + 1e-9
    assert st["accounting"]["zcdp"]["rho"] > 0
    # Repeating an answered request costs nothing and returns the same noisy answer.
    assert _weighted(enc, 1, an) == _weighted(enc, 1, an)


def test_default_budget_is_configurable_on_serve(tmp_path: Path) -> None:
    kh = KeyhostProcess(tmp_path / "kh", extra=["--default-dp-budget", "0.5", "--default-dp-delta", "1e-7"])
    try:
        admin = kh.admin()
        ds = admin.create_dataset("d")
        enc = _enc(ds)
        an = _analyst(kh, admin, ds, [gp.allow.aggregate("age", epsilon=0.25)])
        assert an.budget(ds)["epsilon_total"] == 0.5 and an.budget(ds)["delta"] == 1e-7
        assert _averaging_attack(enc, an, 50) == 2
    finally:
        kh.stop()
    with pytest.raises(RuntimeError, match="--default-dp-budget must be a positive number"):
        KeyhostProcess(tmp_path / "bad", extra=["--default-dp-budget", "0"])
    with gp.Keyhost.local(default_dp_budget=0.3) as local:
        ds = local.admin().create_dataset("d")
        assert local.admin().budget(ds)["epsilon_total"] == 0.3


def test_a_lost_noise_key_is_not_silently_replaced(tmp_path: Path) -> None:
    data = tmp_path / "kh"
    kh = KeyhostProcess(data)
    try:
        admin = kh.admin()
        ds = admin.create_dataset("d")
        enc = _enc(ds)
        an = _analyst(kh, admin, ds, [gp.allow.aggregate("age", epsilon=0.1, budget=10)])
        _weighted(enc, 1, an)
        assert an.budget("d")["epsilon_spent"] == pytest.approx(0.1)
    finally:
        kh.stop()
    (data / "noise.key").unlink()
    with pytest.raises(RuntimeError, match=r"noise\.key is missing .* DP answer charge.*--new-noise-key"):
        KeyhostProcess(data)
    assert not (data / "noise.key").exists()
    # Explicit recovery: a new key, and the request answered before is charged again.
    kh = KeyhostProcess(data, extra=["--new-noise-key"])
    try:
        an = gp.connect(kh.url, an._token)
        spent = an.budget("d")["epsilon_spent"]
        _weighted(enc, 1, an)
        assert an.budget("d")["epsilon_spent"] == pytest.approx(spent + 0.1)
    finally:
        kh.stop()


# -- §4 tokens ---------------------------------------------------------------------------------


def _expiry(admin: gp.Session, ident: str) -> list[str | None]:
    return [t["expires_at"] for t in admin.tokens(ident) if t["revoked_at"] is None]


def test_rotation_never_extends_a_tokens_expiry(keyhost: KeyhostProcess, admin: gp.Session) -> None:
    """The issue's attack: a token issued for 60 s was rotated into one valid for 10 years."""
    ident = f"rot_{dt.datetime.now().timestamp():.0f}"
    admin.create_identity(ident, exist_ok=True)
    s = gp.connect(keyhost.url, admin.create_token(ident, ttl_seconds=60))
    (original,) = _expiry(admin, ident)
    assert original is not None
    s.rotate_token(ttl_seconds=10 * 365 * 86400)
    assert _expiry(admin, ident) == [original]
    s.rotate_token()
    assert _expiry(admin, ident) == [original]
    s.rotate_token(ttl_seconds=5)  # shortening is allowed
    (shorter,) = _expiry(admin, ident)
    assert shorter is not None and shorter < original


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ghostpii.cli", *args], capture_output=True, text=True, timeout=60)


def test_the_bootstrap_admin_token_rotates_and_admin_token_is_rewritten(tmp_path: Path) -> None:
    kh = KeyhostProcess(tmp_path / "kh")
    try:
        path = tmp_path / "kh" / "admin.token"
        old = path.read_text().strip()
        r = _cli("token", "rotate", "--url", kh.url, "--token-file", str(path))
        assert r.returncode == 0, r.stderr
        new = path.read_text().strip()
        assert new != old and new.startswith("gpt_") and old not in r.stdout + r.stderr
        assert path.stat().st_mode & 0o777 == 0o600
        with pytest.raises(gp.AuthenticationError, match="revoked"):
            gp.connect(kh.url, old)
        admin = gp.connect(kh.url, new)
        assert admin.whoami()["role"] == "admin"
        assert _expiry(admin, "admin") == [None]  # the bootstrap token had no expiry; still none
    finally:
        kh.stop()


# -- §4 audit proofs ---------------------------------------------------------------------------


def _put(v: str | None) -> bytes:
    if v is None:
        return b"\x00"
    b = v.encode()
    return b"\x01" + struct.pack("<Q", len(b)) + b


def _micros(t: str) -> int:
    d = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    return (d - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def _canonical(e: dict[str, Any], params: dict[str, Any]) -> bytes:
    """`audit::canonical_bytes` of an entry (as an attacker who knows everything but one field would build it)."""
    fields = [
        "ghostpii/v1/audit-entry",
        str(e["index"]),
        str(_micros(e["time"])),
        e["identity"],
        e["dataset"],
        e["column"],
        e["operation"],
        json.dumps(params, separators=(",", ":"), ensure_ascii=False),  # the keyhost's key order
        None if e["rid_count"] is None else str(e["rid_count"]),
        e["rid_digest"],
        e["decision"],
        e["reason"],
    ]
    return b"".join(_put(f) for f in fields)


def test_proofs_do_not_reveal_other_identities_comparison_constants(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    """The issue's attack: leaf hashes from /v1/audit/proof let another analyst brute-force a
    comparison constant. With salted leaves no guess matches, even the right one."""
    enc = _enc(dataset, compare=True)
    meta = enc["age"].dtype.meta()  # type: ignore[attr-defined]
    alice = _analyst(keyhost, admin, dataset, [gp.allow.compare("age")])
    secret = 47
    d = {"op": "compare", "dataset_id": meta["dataset_id"], "column_id": meta["column_id"], "epoch": meta["epoch"]}
    (r,) = alice.answer_keys([{**d, "constant": secret}])
    checked = alice.check_receipt(r["receipt"])
    assert checked["status"] == "included", checked
    index = checked["audit_index"]
    # Mallory, another identity with no grant here, fetches proofs around Alice's entry.
    mallory = gp.connect(keyhost.url, admin.create_token(admin.create_identity(f"m_{dataset.name}")["name"]))
    admin.create_dataset(dataset.name + "_pad")  # at least one entry after Alice's
    cp = mallory.audit_checkpoint()
    sibling = ((index - 1) ^ 1) + 1
    proof = mallory._request("GET", "/v1/audit/proof", params={"index": sibling, "tree_size": cp["tree_size"]})
    leaf = proof["proof"][0]  # the first node of a sibling's path is Alice's leaf
    # Everything about Alice's entry but the constant (more than Mallory can know).
    (e,) = [x for x in admin._request("GET", "/v1/audit", params={"dataset": dataset.name})["entries"]
            if x["index"] == index]  # fmt: skip
    import base64

    target = base64.b64decode(leaf)
    guesses = {}
    for c in range(0, 121):
        guesses[c] = hashlib.sha256(b"\x00" + _canonical(e, {**e["params"], "constant": c})).digest()
    assert target not in guesses.values(), "an unsalted leaf gives the constant away"
    # The leaf does commit to the entry: with its salt (shown to those who may read the entry,
    # and in Alice's receipt) it is recomputed exactly.
    salt = bytes.fromhex(e["salt"])
    assert r["receipt"]["salt"] == e["salt"]
    assert hashlib.sha256(b"\x00" + salt + _canonical(e, e["params"])).digest() == target
    assert base64.b64decode(checked["leaf_hash"]) == target


def test_offline_verification_pins_the_checkpoint_key(tmp_path: Path) -> None:
    data = tmp_path / "kh"
    kh = KeyhostProcess(data)
    try:
        admin = kh.admin()
        admin.create_dataset("d")
        cp = admin.audit_checkpoint()
    finally:
        kh.stop()
    (tmp_path / "cp.json").write_text(json.dumps(cp))
    r = _cli("audit", "public-key", "--data", str(data))
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert len(key) == 64 and bytes.fromhex(key) == __import__("base64").b64decode(cp["public_key"])
    (tmp_path / "key.hex").write_text(key + "\n")
    ok = _cli("audit", "verify", "--data", str(data), "--checkpoint", str(tmp_path / "cp.json"),
              "--public-key", str(tmp_path / "key.hex"))  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # Another keyhost's key pinned: the checkpoint is refused, though its own signature is valid.
    other = "11" * 32
    bad = _cli("audit", "verify", "--data", str(data), "--checkpoint", str(tmp_path / "cp.json"),
               "--public-key", other)  # fmt: skip
    assert bad.returncode == 1 and "another key" in bad.stdout, bad.stdout + bad.stderr
    junk = _cli("audit", "verify", "--data", str(data), "--checkpoint", str(tmp_path / "cp.json"),
                "--public-key", "not-a-key")  # fmt: skip
    assert junk.returncode != 0 and "public key" in junk.stderr


# -- §4 text length ----------------------------------------------------------------------------


def _cell_lengths(enc: pl.DataFrame, col: str) -> list[int | None]:
    return enc[col].ext.storage().struct.field("val").bin.size().to_list()  # type: ignore[no-any-return]


def test_text_ciphertext_hides_the_exact_length(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    values = ["HIV+", "negative", "", "a\x00", "twelve bytes", "thirteen byte", "é" * 30, None]
    df = pl.DataFrame({"status": values, "note": values})
    enc = gp.encrypt(df, dataset, {"status": gp.text(), "note": gp.text(max_length=64)})
    lens = _cell_lengths(enc, "status")
    assert lens[0] == lens[1], "'HIV+' and 'negative' are told apart by length"
    assert lens[:5] == [45] * 5 and lens[5] == 61 and lens[6] == 93 and lens[7] is None
    # With an owner-set maximum every cell has one length.
    assert set(_cell_lengths(enc, "note")[:7]) == {1 + 12 + 68 + 16}
    # Decryption removes the padding exactly (trailing NULs, empty strings and nulls survive).
    an = _analyst(keyhost, admin, dataset, [gp.allow.decrypt("status"), gp.allow.decrypt("note")])
    out = enc.select(pl.col("status").ghost.decrypt(), pl.col("note").ghost.decrypt()).ghost.reveal(an)
    assert out["status"].to_list() == values and out["note"].to_list() == values


def test_text_longer_than_max_length_is_refused_before_registration(admin: gp.Session, dataset: gp.Dataset) -> None:
    df = pl.DataFrame({"t": ["short", "x" * 65]})
    with pytest.raises(gp.EncryptionError, match=r"row 1 is 65 bytes .*max_length = 64"):
        gp.encrypt(df, dataset, {"t": gp.text(max_length=64)})
    assert admin.audit(dataset).filter(pl.col("operation") == "column.register").height == 0
    with pytest.raises(gp.EncryptionError, match="max_length"):
        gp.text(max_length=0)
