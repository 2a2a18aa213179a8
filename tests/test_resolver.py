"""The answer-key resolver in Rust: the Python session and the kernels of a plain ``.collect()``
share one connection pool; kernel requests are retried with their idempotency key; refusals
under a plain ``.collect()`` carry the typed error. Against a real keyhost process."""

from __future__ import annotations

import http.server
import secrets
import threading
from collections.abc import Iterator

import polars as pl
import pytest
import requests

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


class _Corrupting(http.server.BaseHTTPRequestHandler):
    """Forwards to the real keyhost, but answers every answer-key request with a broken frame."""

    target = ""
    answer = b""

    def _forward(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if method == "POST" and self.path.startswith("/v1/answer-keys"):
            status, data, ctype = 200, self.answer, "application/vnd.ghostpii.answers"
        else:
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
            r = requests.request(method, self.target + self.path, data=body, headers=headers, timeout=10)
            status, data, ctype = r.status_code, r.content, r.headers.get("content-type", "application/json")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._forward("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._forward("POST")

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    "answer",
    [
        b"GPAK\x01\xff\xff\xff\xff{}",  # JSON length past the end
        b'GPAK\x01\x13\x00\x00\x00{"results":[{"ok":' + b"x" * 8,  # JSON cut short
        b"GPAK\x02\x02\x00\x00\x00{}",  # unknown version
        b"<html>not an answer</html>",
    ],
)
def test_broken_answers_are_typed_errors_in_kernels_and_sessions(
    keyhost: KeyhostProcess, dataset: gp.Dataset, answer: bytes
) -> None:
    enc = _encrypted(dataset)
    handler = type("H", (_Corrupting,), {"target": keyhost.url, "answer": answer})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tokens.clear()
        s = gp.connect(f"http://127.0.0.1:{server.server_address[1]}", keyhost.admin_token, retries=0)
        lf = enc.lazy().filter(pl.col("x").ghost.gt(25))
        with pytest.raises(gp.KeyhostError), gp.ghost_errors():  # the kernel's Rust resolver
            lf.collect()
        with pytest.raises(gp.KeyhostError):  # the session (lf.ghost.collect prefetches through it)
            lf.ghost.collect(s)
    finally:
        server.shutdown()
        gp.connect(keyhost.url, keyhost.admin_token)  # later tests use the real keyhost
