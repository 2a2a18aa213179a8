"""Every ghostpii failure is a gp.GhostError subclass under lf.ghost.collect and gp.reveal;
JSON writers refuse ciphertext clearly; to_pandas keeps ciphertext limbs exact."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

import ghostpii as gp
from conftest import KeyhostProcess
from ghostpii import _internal


@pytest.fixture()
def enc(dataset: gp.Dataset) -> pl.DataFrame:
    df = pl.DataFrame({"d": [dt.date(2000, 1, 1), None, dt.date(1980, 5, 5)], "n": [1, 2, 3], "p": [1, 2, 3],
                       "s": ["a", None, "c"]})  # fmt: skip
    return gp.encrypt(df, dataset, {"d": gp.date(compare=True), "n": gp.integer(), "s": gp.text()})


CASES = {
    "date_vs_number": (lambda: pl.col("d").ghost.lt(5), gp.UnsupportedOperation, "cannot compare date column 'd'"),
    "lt_without_ord": (lambda: pl.col("n").ghost.lt(5), gp.UnsupportedOperation, r"'ord' facet"),
    "sum_of_plaintext": (lambda: pl.col("p").ghost.sum(), gp.UnsupportedOperation, "needs an encrypted column"),
    "older_than_on_int": (lambda: pl.col("n").ghost.older_than(21), gp.UnsupportedOperation, "column 'n'"),
    "sum_of_text": (lambda: pl.col("s").ghost.sum(), gp.UnsupportedOperation, "'num' facet"),
}


@pytest.mark.parametrize("name", CASES)
def test_collect_and_reveal_raise_ghost_errors(admin: gp.Session, enc: pl.DataFrame, name: str) -> None:
    make, cls, msg = CASES[name]
    with pytest.raises(cls, match=msg) as e:
        enc.lazy().select(make()).ghost.collect(admin)
    assert isinstance(e.value, gp.GhostError)
    assert isinstance(e.value.__cause__, pl.exceptions.PolarsError), "chained to the Polars error"
    # the same under gp.ghost_errors() around a plain collect
    with pytest.raises(cls, match=msg), gp.ghost_errors():
        enc.lazy().select(make()).collect()


def test_plain_collect_refusal_becomes_permission_denied(
    keyhost: KeyhostProcess, admin: gp.Session, enc: pl.DataFrame
) -> None:
    ds = enc.schema["d"].meta()["dataset"]  # type: ignore[attr-defined]
    token = admin.grant(f"err_{ds}", ds, [gp.allow.aggregate("n")])
    gp.connect(keyhost.url, token)  # the active session has no compare grant
    _internal.clear_tokens()
    with pytest.raises(gp.PermissionDenied, match="no 'compare' grant on column 'd'") as e, gp.ghost_errors():
        enc.lazy().filter(pl.col("d").ghost.older_than(18, as_of=dt.date(2024, 1, 1))).collect()
    assert e.value.reason == "permission_denied"


def test_a_corrupt_ord_cell_says_it_is_corrupt(admin: gp.Session, enc: pl.DataFrame) -> None:
    st = enc["d"].ext.storage()
    bad = pl.DataFrame({"d": st}).with_columns(
        pl.col("d").struct.with_fields(pl.field("ord").bin.slice(0, 5))  # truncated right ciphertexts
    )
    tampered = bad.with_columns(pl.col("d").ext.to(enc.schema["d"]))
    with pytest.raises(gp.CiphertextError, match=r"column 'd' is corrupt: row 0: corrupt ciphertext"):
        tampered.lazy().filter(pl.col("d").ghost.older_than(18, as_of=dt.date(2024, 1, 1))).ghost.collect(admin)


def test_json_writers_refuse_ciphertext_clearly(enc: pl.DataFrame) -> None:
    for write in (enc.ghost.write_json, enc.ghost.write_ndjson):
        with pytest.raises(gp.UnsupportedOperation, match=r"\['d', 'n', 's'\].*write Parquet or IPC"):
            write()
    sealed = enc.select(pl.col("n").ghost.sum())
    with pytest.raises(gp.UnsupportedOperation, match=r"\['n'\]"):
        sealed.ghost.write_json()
    assert enc.select("p").ghost.write_json() == enc.select("p").write_json(), "plaintext frames write as usual"


def test_to_pandas_keeps_ciphertext_limbs_exact(enc: pl.DataFrame) -> None:
    pd = pytest.importorskip("pandas")
    pdf = enc.to_pandas()
    assert isinstance(pdf["n"].dtype, pd.ArrowDtype)
    want = enc["n"].ext.storage().to_list()
    got = pdf["n"].tolist()
    for w, g in zip(want, got, strict=True):
        if w is None:
            assert g is None or g is pd.NA
        else:
            assert {k: g[k] for k in ("rid", "num", "num_hi")} == {k: w[k] for k in ("rid", "num", "num_hi")}
            assert all(isinstance(g[k], int) for k in ("rid", "num", "num_hi")), "integers, never floats"
    assert any(w is None for w in enc["d"].ext.storage().to_list()), "the date column has a null row"
    d = pdf["d"].tolist()
    assert all(isinstance(v["num"], int) for v in d if isinstance(v, dict))
