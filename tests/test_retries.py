"""Answer-key requests are idempotent: a retry is answered from the keyhost's record, audited and
charged once; a slow keyhost is reported as slow. Against a real keyhost process."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import polars as pl
import pytest
import requests

import ghostpii as gp
from conftest import KeyhostProcess
from ghostpii.reveal import sum_descriptors
from relay import SlowProxy


def _encrypted(dataset: gp.Dataset) -> pl.DataFrame:
    df = pl.DataFrame({"x": [10, 20, 30]})
    return gp.encrypt(df, dataset, {"x": gp.integer(bounds=(0, 100))})


def _descriptor(session: gp.Session, enc: pl.DataFrame) -> dict[str, Any]:
    """The sum descriptor that revealing ``x.ghost.sum()`` sends (reveal builds it in Rust)."""
    (d,) = sum_descriptors(enc.select(pl.col("x").ghost.sum())["x"])
    return d


def _post(keyhost: KeyhostProcess, body: object, key: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {keyhost.admin_token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return requests.post(f"{keyhost.url}/v1/answer-keys", json=body, headers=headers, timeout=30)


def _sums(admin: gp.Session, ds: gp.Dataset) -> int:
    return admin.audit(ds).filter(pl.col("operation") == "sum").height


def test_the_same_request_twice_is_answered_once(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    enc = _encrypted(dataset)
    body = {"requests": [_descriptor(admin, enc)]}
    before = _sums(admin, dataset)
    key = secrets.token_hex(16)
    first = _post(keyhost, body, key)
    assert first.status_code == 200, first.text
    again = _post(keyhost, body, key)
    assert again.status_code == 200, again.text
    assert again.json() == first.json(), "a retry gets the recorded answer, receipt included"
    assert _sums(admin, dataset) == before + 1, "audited once"
    # without a key (or with a new one) the same body is a new request, audited again
    assert (
        _post(keyhost, body, secrets.token_hex(16)).json()["results"][0]["receipt"]
        != first.json()["results"][0]["receipt"]
    )
    assert _sums(admin, dataset) == before + 2


def test_a_reused_key_with_another_body_is_refused(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    enc = _encrypted(dataset)
    key = secrets.token_hex(16)
    assert _post(keyhost, {"requests": [_descriptor(admin, enc)]}, key).status_code == 200
    other = _post(keyhost, {"requests": [_descriptor(admin, enc), _descriptor(admin, enc)]}, key)
    assert other.status_code == 409
    assert other.json()["error"]["reason"] == "conflict"
    assert "already used for a different request" in other.json()["error"]["message"]
    bad = _post(keyhost, {"requests": [_descriptor(admin, enc)]}, "short")
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["error"]["message"]


def test_a_dp_retry_charges_the_budget_once(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    enc = _encrypted(dataset)
    token = admin.grant("dp_retry", dataset, [gp.allow.aggregate("x", epsilon=0.5, budget=5)])
    body = {"requests": [_descriptor(admin, enc)]}
    key = secrets.token_hex(16)
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    url = f"{keyhost.url}/v1/answer-keys"
    first = requests.post(url, json=body, headers=headers, timeout=30).json()
    assert first["results"][0]["ok"], first
    spent = admin.budget(dataset, "dp_retry")["epsilon_spent"]
    assert spent == pytest.approx(0.5)
    again = requests.post(url, json=body, headers=headers, timeout=30).json()
    assert again == first
    assert admin.budget(dataset, "dp_retry")["epsilon_spent"] == pytest.approx(spent)


@pytest.fixture()
def slow(keyhost: KeyhostProcess) -> Iterator[SlowProxy]:
    p = SlowProxy(keyhost.url)
    yield p
    p.close()


def test_the_client_retries_a_timed_out_request_with_the_same_key(
    slow: SlowProxy, admin: gp.Session, dataset: gp.Dataset, keyhost: KeyhostProcess
) -> None:
    enc = _encrypted(dataset)
    before = _sums(admin, dataset)
    s = gp.connect(slow.url, keyhost.admin_token, timeout=(5.0, 1.0))
    s.reset_stats()
    slow.delay_next = 2.5  # the keyhost answers, the answer arrives after the client gave up
    out = enc.select(pl.col("x").ghost.sum()).ghost.reveal(s)
    assert out["x"][0] == 60
    st = s.stats()
    assert st["retries"] == 1 and st["answer_key_requests"] == 1 and st["round_trips"] == 2, st
    assert _sums(admin, dataset) == before + 1, "the retry was answered from the record, not audited again"


def test_a_slow_keyhost_is_reported_as_slow(slow: SlowProxy, dataset: gp.Dataset, keyhost: KeyhostProcess) -> None:
    enc = _encrypted(dataset)
    s = gp.connect(slow.url, keyhost.admin_token, timeout=(5.0, 0.5), retries=0)
    slow.delay_next = 1.5
    with pytest.raises(gp.KeyhostError) as e:
        enc.select(pl.col("x").ghost.sum()).ghost.reveal(s)
    msg = str(e.value)
    assert "is slow" in msg and "within 0.5 s" in msg and "timeout=" in msg, msg
    assert "cannot reach" not in msg
    assert e.value.reason == "timeout"
