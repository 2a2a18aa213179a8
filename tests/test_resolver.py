"""The answer-key resolver in Rust: the Python session and the kernels of a plain ``.collect()``
share one connection pool; kernel requests are retried with their idempotency key; refusals
under a plain ``.collect()`` carry the typed error. Against a real keyhost process."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import polars as pl
import pytest

import ghostpii as gp
from conftest import KeyhostProcess
from ghostpii import tokens
from relay import SlowProxy


@pytest.fixture()
def relay(keyhost: KeyhostProcess) -> Iterator[SlowProxy]:
    p = SlowProxy(keyhost.url)
    yield p
    p.close()


def _encrypted(dataset: gp.Dataset) -> pl.DataFrame:
    df = pl.DataFrame({"x": [10, 20, 30, 40, 50, 60], "k": ["a", "b", "a", "c", "b", "a"]})
    schema = {"x": gp.integer(bounds=(0, 100), compare=True), "k": gp.text(group=True)}
    return gp.encrypt(df, dataset, schema)


def _audited(admin: gp.Session, ds: gp.Dataset, op: str) -> int:
    return admin.audit(ds).filter(pl.col("operation") == op).height


def test_the_session_and_plain_collect_kernels_share_one_connection(
    relay: SlowProxy, keyhost: KeyhostProcess, dataset: gp.Dataset
) -> None:
    enc = _encrypted(dataset)
    tokens.clear()
    s = gp.connect(relay.url, keyhost.admin_token)  # activated: kernels use its pool
    s.reset_stats()
    # plain collect: the comparison kernel fetches its token itself; ghost.key() its pads
    kept = enc.lazy().filter(pl.col("x").ghost.gt(25)).collect()
    assert kept.height == 4
    keys = enc.select(pl.col("k").ghost.key()).to_series()
    assert keys.n_unique() == 3 and keys.null_count() == 0
    out = kept.select(pl.col("x").ghost.sum()).ghost.reveal(s)  # the session's own request
    assert out["x"][0] == 30 + 40 + 50 + 60
    st = s.stats()
    assert st["answer_key_requests"] == 3 and st["round_trips"] == 3 and st["retries"] == 0, st
    assert relay.connections == 1, f"{relay.connections} connections for 1 session and its kernels"


def test_a_kernel_request_is_retried_with_its_idempotency_key(
    relay: SlowProxy, keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    enc = _encrypted(dataset)
    tokens.clear()
    s = gp.connect(relay.url, keyhost.admin_token, timeout=(5.0, 1.0))
    s.reset_stats()
    before = _audited(admin, dataset, "compare")
    relay.delay_next = 2.5  # the keyhost answers; the answer arrives after the kernel gave up
    assert enc.lazy().filter(pl.col("x").ghost.lt(35)).collect().height == 3
    st = s.stats()
    assert st["retries"] == 1 and st["round_trips"] == 2 and st["answer_key_requests"] == 1, st
    assert _audited(admin, dataset, "compare") == before + 1, "the retry was answered from the record"


def test_a_refusal_under_plain_collect_names_the_error_and_the_grant(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    enc = _encrypted(dataset)
    tokens.clear()
    token = admin.grant(f"no_compare_{secrets.token_hex(4)}", dataset, [gp.allow.aggregate("x")])
    gp.connect(keyhost.url, token)
    lf = enc.lazy().filter(pl.col("x").ghost.gt(25))
    # Polars makes every plugin error a ComputeError; its message starts with the typed name
    denied = "ghostpii: PermissionDenied: .*no 'compare' grant on column 'x'"
    with pytest.raises(pl.exceptions.ComputeError, match=denied):
        lf.collect()
    with pytest.raises(gp.PermissionDenied, match="no 'compare' grant on column 'x'"), gp.ghost_errors():
        lf.collect()
    gp.connect(keyhost.url, keyhost.admin_token)  # later tests use the admin's grants


def test_a_kernel_whose_keyhost_is_gone_says_so(tmp_path_factory: pytest.TempPathFactory) -> None:
    kh = KeyhostProcess(tmp_path_factory.mktemp("gone"))
    try:
        s = gp.connect(kh.url, kh.admin_token, retries=1)
        enc = _encrypted(s.create_dataset("gone"))
        tokens.clear()
    finally:
        kh.stop()
    with pytest.raises(gp.KeyhostError, match=f"cannot reach the keyhost at {kh.url}"), gp.ghost_errors():
        enc.lazy().filter(pl.col("x").ghost.gt(25)).collect()
    st = s.stats()
    assert st["retries"] == 1, st  # a refused connection is retried, then reported
