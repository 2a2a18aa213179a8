"""gp.compute: row-wise circuits over FHE ciphertexts under the analyst's own tfhe key, evaluated by
a real keyhost (docs/rowwise.md). FHE is slow: the frames are small."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest

import ghostpii as gp
from conftest import KeyhostProcess
from ghostpii import _internal, _protocol
from ghostpii.rowwise import _CLIENTS, _send, fhe_client
from relay import SlowProxy

N = 30
SYMPTOMS = ["aches", "cough", "fatigue", "sore_throat", "runny_nose"]
SURVEY = (
    3 * pl.col("aches")
    + 2 * pl.col("cough")
    + 4 * pl.col("fatigue")
    + 2 * pl.col("sore_throat")
    + 3 * pl.col("runny_nose")
    + 7 * (pl.col("temperature") > 100.5)
    > 15
)


def _frame() -> pl.DataFrame:
    rng = np.random.default_rng(23)
    cols: dict[str, object] = {"id": np.arange(N)}
    for s in SYMPTOMS:
        cols[s] = rng.integers(0, 2, N)
    cols["temperature"] = np.round(rng.uniform(97.0, 104.0, N), 1)
    cols["x"] = rng.integers(-20, 21, N)
    cols["y"] = rng.integers(0, 11, N)
    df = pl.DataFrame(cols)
    # a null temperature: its row is null (dropped by a filter), as in plaintext Polars
    return df.with_columns(pl.when(pl.col("id") == 5).then(None).otherwise(pl.col("temperature")).alias("temperature"))


SCHEMA = {
    **{s: gp.integer(bounds=(0, 1)) for s in SYMPTOMS},
    "temperature": gp.number(decimals=1, bounds=(90, 110)),
    "x": gp.integer(bounds=(-20, 20)),
    "y": gp.integer(bounds=(0, 10)),
}


_SHARED: list[object] = []


def _connect(url: str, token: str | None) -> gp.Session:
    """A session of the identity, with the test module's one FHE key pair (generating keys takes
    seconds; each identity still uploads the server key itself)."""
    assert token is not None
    s = gp.connect(url, token)
    if not _SHARED:
        _SHARED.append(_internal.FheClient())
    _CLIENTS[s] = _SHARED[0]
    return s


class World:
    def __init__(self, admin: gp.Session, dataset: gp.Dataset, proxy: SlowProxy) -> None:
        self.df = _frame()
        self.enc = gp.encrypt(self.df, dataset, SCHEMA)
        self.admin = admin
        self.dataset = dataset
        token = admin.grant(
            "doctor",
            dataset,
            [gp.allow.compute([*SYMPTOMS, "temperature", "x", "y"], max_evaluations=3, reveal_values=True)],
        )
        self.proxy = proxy
        self.doctor = _connect(proxy.url, token)


@pytest.fixture(scope="module")
def world(keyhost: KeyhostProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    admin = keyhost.admin()
    ds = admin.create_dataset("rowwise", population="rowwise")
    proxy = SlowProxy(keyhost.url)
    yield World(admin, ds, proxy)
    proxy.close()


def _audit(w: World) -> pl.DataFrame:
    return w.admin.audit(w.dataset).filter(pl.col("operation") == "compute")


def test_the_survey_selects_exactly_what_plaintext_polars_selects(world: World) -> None:
    w = world
    world.proxy.sent.clear()
    got = w.enc.filter(gp.compute(w.enc, SURVEY, session=w.doctor))
    want = w.df.filter(SURVEY)
    assert 0 < want.height < N, "the data must select some rows and not all"
    assert got["id"].to_list() == want["id"].to_list()
    # the keyhost received ciphertexts only: every compute request is a frame whose JSON names the
    # circuit, rows and ciphertext blobs, and no plaintext value of any row is in any byte sent
    sent = b"".join(world.proxy.sent)
    assert b"PUT /v1/fhe/server-key" in sent and sent.count(b"POST /v1/compute") == 1
    start = sent.index(b"GPAK")
    head = json.loads(sent[start + 9 : start + 9 + int.from_bytes(sent[start + 5 : start + 9], "little")])
    assert set(head) == {"dataset_id", "rids", "circuit", "bits", "output", "text", "ciphertexts"}
    assert set(head["ciphertexts"]) == {"$blob", "len"} and head["ciphertexts"]["len"] > 100 * (N - 1)
    text = json.dumps(head)
    temps = w.df["temperature"].drop_nulls().unique().to_list()
    assert not [t for t in temps if str(t) in text and t != 100.5]
    # the stored integers (x·10) appear nowhere in the compute request as little-endian i64
    # (powers of two are left out: they are lengths in tfhe's serialisation)
    request = sent[sent.index(b"POST /v1/compute") :]
    for t in {int(round(t * 10)) for t in temps}:
        if t & (t - 1):
            assert t.to_bytes(8, "little", signed=True) not in request
    # the audit names the expression, the rows and the output kind
    a = _audit(w)
    assert a.height >= 1 and set(a["decision"]) == {"issued"}
    params = json.loads(a["params"][0])
    assert params["output"] == "revealed" and "temperature" in params["expression"]
    assert params["bits"] == 8, "the offsets centre every input: 8 bits hold the survey"
    assert a["rid_count"].sum() == N - 1


def test_values_and_nonlinear_ops_equal_plaintext(world: World) -> None:
    w = world
    for expr in [
        (pl.col("x") - pl.col("y")).abs().clip(0, 15),
        pl.col("x") ** 2 + 2 * pl.col("y"),
        pl.when(pl.col("x") > pl.col("y")).then(pl.col("x") * pl.col("y")).otherwise(-3),
    ]:
        got = gp.compute(w.enc.head(8), expr, session=w.doctor)  # FHE products are slow: 8 rows
        want = w.df.head(8).select(expr).to_series()
        assert got.dtype == pl.Int64 and got.to_list() == want.to_list(), str(expr)


def test_a_fixed_point_value_comes_back_in_the_users_units(world: World) -> None:
    expr = (pl.col("temperature") - 100).clip(lower_bound=0)
    got = gp.compute(world.enc.head(8), expr, session=world.doctor)
    want = world.df.head(8).select(expr).to_series()
    assert got.dtype == pl.Float64
    assert got.is_null().to_list() == want.is_null().to_list()
    np.testing.assert_allclose(got.drop_nulls().to_numpy(), want.drop_nulls().to_numpy(), atol=1e-9)


def _greater_than(meta: dict[str, int], c: int) -> dict[str, object]:
    """The circuit ``column > c`` as an attacker writes it (no offset)."""
    return {
        "inputs": [{"terms": [{"column_id": meta["column_id"], "epoch": meta["epoch"], "weight": 1}]}],
        "nodes": [{"op": "input", "index": 0}, {"op": "const", "value": c}, {"op": "cmp", "cmp": "gt", "a": 0, "b": 1}],
        "output": 2,
    }


def test_a_shifted_input_binary_search_stops_at_the_rows_limit(admin: gp.Session, dataset: gp.Dataset) -> None:
    """The analyst controls its ciphertexts: x + δ gives (x + δ > 0). A binary search over δ on
    one row learns one bit per evaluation, and the keyhost stops it at max_evaluations."""
    df = pl.DataFrame({"v": [37, 5, 90]})
    enc = gp.encrypt(df, dataset, {"v": gp.integer(bounds=(0, 100))})
    an = _connect(admin.url, admin.grant("prober", dataset, [gp.allow.compute("v", max_evaluations=2)]))
    meta = enc.schema["v"].meta()  # type: ignore[attr-defined]
    circuit = {
        "inputs": [{"terms": [{"column_id": meta["column_id"], "epoch": meta["epoch"], "weight": 1}]}],
        "nodes": [
            {"op": "input", "index": 0},
            {"op": "const", "value": 50},
            {"op": "cmp", "cmp": "gt", "a": 0, "b": 1},
        ],
        "output": 2,
    }
    client = fhe_client(an)
    one = enc.head(1)
    rows = _internal.ScoreRows([one["v"]], [1])
    residue = int(np.frombuffer(rows.residues(8), dtype="<i8")[0])

    def probe(delta: int) -> bool:
        v = ((residue + delta + 128) % 256) - 128
        cts = bytes(client.encrypt(8, np.array([v], dtype="<i8").tobytes()))
        answer, blob = _send(
            an, dict(_protocol.compute(meta["dataset_id"], bytes(rows.rid_set()), circuit, 8, "v+d>50", cts))
        )
        return bool(client.decrypt_bools(blob, 1)[0])

    # shifted by +20: 37 + 20 > 50 is True although 37 > 50 is False; by -20, False
    assert probe(20) is True
    assert probe(-20) is False
    with pytest.raises(gp.PermissionDenied) as e:
        probe(0)
    assert e.value.reason == "max_evaluations"
    # the refusal is audited, the other rows keep their allowance
    a = admin.audit(dataset).filter(pl.col("operation") == "compute")
    assert a["decision"].to_list().count("refused") == 1 and a["decision"].to_list().count("issued") == 2
    assert gp.compute(enc.slice(1, 2), pl.col("v") > 50, session=an).to_list() == [False, True]


def test_refusals_are_typed_and_nothing_is_counted_for_them(admin: gp.Session, dataset: gp.Dataset) -> None:
    df = pl.DataFrame({"a": [1, 2, 3], "b": [3, 2, 1], "u": [1, 2, 3], "t": ["p", "q", "r"]})
    enc = gp.encrypt(
        df,
        dataset,
        {"a": gp.integer(bounds=(0, 9)), "b": gp.integer(bounds=(0, 9)), "u": gp.integer(), "t": gp.text()},
    )
    token = admin.grant("limited", dataset, [gp.allow.compute(["a"], max_evaluations=1, ops=["cmp"])])
    an = _connect(admin.url, token)
    with pytest.raises(gp.PermissionDenied) as e:  # no grant on b
        gp.compute(enc, pl.col("a") > pl.col("b"), session=an)
    assert e.value.missing_grant is not None and e.value.missing_grant["column"] == "b"
    with pytest.raises(gp.PermissionDenied, match="reveal_values"):  # an integer output
        gp.compute(enc, pl.col("a") * pl.col("a"), session=an)
    with pytest.raises(gp.PermissionDenied, match="ops"):  # an op the grant does not list
        gp.compute(enc, (pl.col("a") > 1) & (pl.col("a") < 3), session=an)
    with pytest.raises(gp.UnsupportedOperation, match="bounds"):
        gp.compute(enc, pl.col("u") > 1, session=an)
    with pytest.raises(gp.UnsupportedOperation, match="num"):
        gp.compute(enc, pl.col("t") == "p", session=an)
    with pytest.raises(gp.UnsupportedOperation, match="division"):
        gp.compute(enc, pl.col("a") / pl.col("b") > 1, session=an)
    # garbage ciphertexts: refused as a bad request, nothing counted
    meta = enc.schema["a"].meta()  # type: ignore[attr-defined]
    rows = _internal.ScoreRows([enc["a"]], [1])
    circuit = _greater_than(meta, 1)
    fhe_client(an)
    with pytest.raises(gp.KeyhostError) as e:
        _send(an, dict(_protocol.compute(meta["dataset_id"], bytes(rows.rid_set()), circuit, 8, "a>1", b"\x00" * 64)))
    assert e.value.reason == "invalid_request"
    with pytest.raises(gp.KeyhostError) as e:  # a width that cannot hold 300
        bad = _greater_than(meta, 300)
        _send(an, dict(_protocol.compute(meta["dataset_id"], bytes(rows.rid_set()), bad, 8, "a>300", b"")))
    assert e.value.reason == "invalid_request" and "16 bits" in str(e.value)
    # every refusal above left the one evaluation per row of the grant untouched
    assert gp.compute(enc, pl.col("a") > 1, session=an).to_list() == [False, True, True]
    with pytest.raises(gp.PermissionDenied) as e:
        gp.compute(enc, pl.col("a") > 2, session=an)
    assert e.value.reason == "max_evaluations"
    decisions = admin.audit(dataset).filter(pl.col("operation") == "compute")["decision"].to_list()
    assert decisions.count("issued") == 1


def test_a_session_without_an_uploaded_key_is_told_to_upload_it(admin: gp.Session, dataset: gp.Dataset) -> None:
    enc = gp.encrypt(pl.DataFrame({"a": [1, 2]}), dataset, {"a": gp.integer(bounds=(0, 9))})
    an = _connect(admin.url, admin.grant("nokey", dataset, [gp.allow.compute("a", max_evaluations=2)]))
    client = fhe_client(an, upload=False)
    meta = enc.schema["a"].meta()  # type: ignore[attr-defined]
    rows = _internal.ScoreRows([enc["a"]], [1])
    circuit = _greater_than(meta, 1)
    cts = bytes(client.encrypt(8, np.zeros(2, dtype="<i8").tobytes()))
    with pytest.raises(gp.KeyhostError) as e:
        _send(an, dict(_protocol.compute(meta["dataset_id"], bytes(rows.rid_set()), circuit, 8, "a>1", cts)))
    assert e.value.reason == "fhe_key_missing" and "PUT /v1/fhe/server-key" in str(e.value)
    # gp.compute uploads it and answers
    assert gp.compute(enc, pl.col("a") > 1, session=an).to_list() == [False, True]


def test_a_full_key_cache_refuses_the_upload(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GHOSTPII_FHE_KEYS_MAX_BYTES", "1000000")
    kh = KeyhostProcess(tmp_path_factory.mktemp("small-cache"))
    try:
        with pytest.raises(gp.KeyhostError) as e:
            fhe_client(_connect(kh.url, kh.admin_token))
        assert e.value.reason == "fhe_key_cache_full" and "GHOSTPII_FHE_KEYS_MAX_BYTES" in str(e.value)
    finally:
        kh.stop()


def test_plain_polars_arithmetic_on_ciphertext_points_to_gp_compute(world: World) -> None:
    from ghostpii.errors import ghost_errors

    for expr in (pl.col("x") * pl.col("y"), pl.col("x") > pl.col("y")):
        with pytest.raises(gp.UnsupportedOperation, match=r"gp\.compute"), ghost_errors():
            world.enc.lazy().select(expr).collect()
