"""Column format: extension types through Parquet/IPC/pyarrow, nulls, dtypes, bounds, errors."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal, assert_series_equal

import ghostpii as gp
from conftest import KeyhostProcess


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "i8": pl.Series([-128, 127, None, 0], dtype=pl.Int8),
            "i16": pl.Series([-32768, 32767, 1, None], dtype=pl.Int16),
            "i32": pl.Series([-(2**31), 2**31 - 1, None, 5], dtype=pl.Int32),
            "i64": pl.Series([-(2**62), 2**62, 3, None], dtype=pl.Int64),
            "u8": pl.Series([0, 255, None, 1], dtype=pl.UInt8),
            "u16": pl.Series([0, 65535, 2, None], dtype=pl.UInt16),
            "u32": pl.Series([0, 2**32 - 1, None, 7], dtype=pl.UInt32),
            "f32": pl.Series([1.5, -2.25, None, 0.0], dtype=pl.Float32),
            "f64": pl.Series([1e9, -1e9, 0.123456, None], dtype=pl.Float64),
            "b": pl.Series([True, False, None, True]),
            "d": pl.Series([dt.date(1900, 1, 1), dt.date(2100, 12, 31), dt.date(2000, 2, 29), None]),
            "ts": pl.Series(
                [dt.datetime(1999, 12, 31, 23, 59, 59, 123456), None, dt.datetime(1970, 1, 1), dt.datetime(2038, 1, 19)]
            ),
            "s": pl.Series(["ä", "", None, "x" * 1000]),
            "plain": [1, 2, 3, 4],
        }
    )


SCHEMA = {
    "i8": gp.integer(), "i16": gp.integer(), "i32": gp.integer(), "i64": gp.integer(),
    "u8": gp.integer(), "u16": gp.integer(), "u32": gp.integer(),
    "f32": gp.number(decimals=2), "f64": gp.number(decimals=6), "b": gp.boolean(),
    "d": gp.date(), "ts": gp.datetime(), "s": gp.text(),
}  # fmt: skip


def test_every_dtype_round_trips_through_parquet_and_ipc(
    tmp_path: Path, admin: gp.Session, dataset: gp.Dataset
) -> None:
    df = _frame()
    enc = gp.encrypt(df, dataset, SCHEMA)
    assert enc.columns == df.columns
    assert enc["plain"].to_list() == [1, 2, 3, 4], "columns not in the schema stay plaintext"
    for c in SCHEMA:
        assert isinstance(enc.schema[c], gp.EncryptedType), c
        assert enc[c].null_count() == df[c].null_count(), f"null positions of {c} are kept"
    enc.write_parquet(tmp_path / "x.parquet")
    enc.write_ipc(tmp_path / "x.arrow")
    for back in (pl.read_parquet(tmp_path / "x.parquet"), pl.read_ipc(tmp_path / "x.arrow")):
        assert back.schema == enc.schema, "extension type and metadata survive"
        out = back.select(pl.col("plain"), *[pl.col(c).ghost.decrypt() for c in SCHEMA]).ghost.reveal(admin)
        want = df.with_columns(pl.col("f32").round(2), pl.col("f64").round(6))
        assert_frame_equal(out, want.select(out.columns), check_exact=False, rel_tol=1e-6)


def test_metadata_describes_the_column(admin: gp.Session, dataset: gp.Dataset) -> None:
    enc = gp.encrypt(pl.DataFrame({"x": [1.25]}), dataset, {"x": gp.number(decimals=2, bounds=(0, 10))})
    meta = json.loads(enc.schema["x"].ext_metadata())
    assert meta["dtype"] == "float64" and meta["scale"] == 2 and meta["bounds"] == [0, 1000]
    assert meta["dataset"] == dataset.name and meta["facets"] == ["num"] and meta["v"] == 1
    assert meta["keyhost"] == admin.keyhost_id


def test_pyarrow_table_and_lazyframe_inputs_and_arrow_export(dataset: gp.Dataset) -> None:
    t = pa.table({"x": [1, 2, 3]})
    enc = gp.encrypt(t, dataset, {"x": gp.integer()})
    enc2 = gp.encrypt(pl.LazyFrame({"x": [1, 2, 3]}), dataset, {"x": gp.integer()})
    assert enc.schema == enc2.schema
    arrow = enc.to_arrow()
    assert arrow.schema.field("x").type.extension_name == "ghostpii.encrypted"
    back = pl.from_arrow(arrow)
    assert isinstance(back, pl.DataFrame) and back.schema == enc.schema


def test_pyarrow_reads_polars_parquet_with_any_binary_storage(tmp_path: Path, dataset: gp.Dataset) -> None:
    enc = gp.encrypt(pl.DataFrame({"s": ["a", "b"]}), dataset, {"s": gp.text()})
    enc.write_parquet(tmp_path / "s.parquet")
    t = pq.read_table(tmp_path / "s.parquet")
    typ = t.schema.field("s").type
    assert isinstance(typ, pa.ExtensionType) and typ.extension_name == "ghostpii.encrypted"
    for storage in (pa.binary(), pa.large_binary(), pa.binary_view()):
        st = pa.struct([("rid", pa.uint64()), ("val", storage)])
        restored = pa.ExtensionType.__arrow_ext_deserialize__  # the registered class accepts any storage
        assert restored is not None
        from ghostpii.dtypes import ArrowEncryptedType

        inst = ArrowEncryptedType.__arrow_ext_deserialize__(st, typ.__arrow_ext_serialize__())
        assert inst.storage_type == st


def test_equal_values_give_different_ciphertext(dataset: gp.Dataset) -> None:
    enc = gp.encrypt(pl.DataFrame({"x": [7, 7, 7], "s": ["a", "a", "a"]}), dataset, {"x": gp.integer(), "s": gp.text()})
    num = enc["x"].ext.storage().struct.field("num")
    assert num.n_unique() == 3
    val = enc["s"].ext.storage().struct.field("val")
    assert val.n_unique() == 3
    again = gp.encrypt(pl.DataFrame({"x": [7]}), dataset, {"x": gp.integer()})
    assert again["x"].ext.storage().struct.field("rid")[0] > enc["x"].ext.storage().struct.field("rid")[2], "fresh rids"


def test_bounds_are_enforced_or_clipped(admin: gp.Session, dataset: gp.Dataset) -> None:
    df = pl.DataFrame({"income": [10.0, 2_000_000.0, -5.0]})
    with pytest.raises(gp.EncryptionError, match=r"column 'income'.*2000000.0+ at row 1.*\[0(\.00)?, 1000000(\.00)?\]"):
        gp.encrypt(df, dataset, {"income": gp.number(decimals=2, bounds=(0, 1_000_000))})
    assert admin.audit(dataset).filter(pl.col("operation") == "column.register").height == 0, "nothing registered"
    # half a cent above the bound rounds onto it (half to even): accepted
    ok = gp.encrypt(pl.DataFrame({"v": [1_000_000.004]}), dataset, {"v": gp.number(decimals=2, bounds=(0, 1_000_000))})
    assert ok.select(pl.col("v").ghost.decrypt()).ghost.reveal(admin)["v"][0] == 1_000_000.0
    enc = gp.encrypt(df, dataset, {"income": gp.number(decimals=2, bounds=(0, 1_000_000), clip=True)})
    out = enc.select(pl.col("income").ghost.decrypt()).ghost.reveal(admin)
    assert out["income"].to_list() == [10.0, 1_000_000.0, 0.0]


def test_exact_sums_at_the_bounds(admin: gp.Session, dataset: gp.Dataset) -> None:
    lo, hi = -(10**15), 10**15
    df = pl.DataFrame({"x": [hi] * 5000 + [lo] * 2000 + [None] * 10})
    enc = gp.encrypt(df, dataset, {"x": gp.integer(bounds=(lo, hi))})
    out = enc.select(pl.col("x").ghost.sum().alias("s"), pl.col("x").ghost.count().alias("n")).ghost.reveal(admin)
    assert out["s"][0] == 3000 * hi
    assert out["n"][0] == 7000


def test_bad_input_errors(admin: gp.Session, dataset: gp.Dataset) -> None:
    with pytest.raises(gp.EncryptionError, match="not in the frame"):
        gp.encrypt(pl.DataFrame({"a": [1]}), dataset, {"b": gp.integer()})
    with pytest.raises(gp.EncryptionError, match=r"column 'a' has dtype String, but gp.integer\(\) needs"):
        gp.encrypt(pl.DataFrame({"a": ["x"]}), dataset, {"a": gp.integer()})
    with pytest.raises(gp.EncryptionError, match="UInt64 is not supported"):
        gp.encrypt(pl.DataFrame({"a": pl.Series([1], dtype=pl.UInt64)}), dataset, {"a": gp.integer()})
    with pytest.raises(gp.EncryptionError, match="not finite"):
        gp.encrypt(pl.DataFrame({"a": [1.0, float("nan")]}), dataset, {"a": gp.number()})
    with pytest.raises(pl.exceptions.PolarsError, match="needs an encrypted column"):
        pl.DataFrame({"a": [1]}).select(pl.col("a").ghost.sum())
    enc = gp.encrypt(pl.DataFrame({"s": ["x"]}), dataset, {"s": gp.text()})
    with pytest.raises(pl.exceptions.PolarsError, match="'num' facet"):
        enc.select(pl.col("s").ghost.sum())


def test_corrupt_ciphertext_is_detected(admin: gp.Session, dataset: gp.Dataset) -> None:
    enc = gp.encrypt(pl.DataFrame({"s": ["secret", "other"]}), dataset, {"s": gp.text()})
    st = enc["s"].ext.storage()
    # swap the rids of the two rows: the AEAD binds each cell to its rid
    frame = pl.DataFrame({"s": st}).with_columns(pl.col("s").struct.with_fields(pl.field("rid").reverse()))
    tampered = frame.with_columns(pl.col("s").ext.to(enc.schema["s"]))
    with pytest.raises(gp.CiphertextError, match="authentication failed"):
        tampered.select(pl.col("s").ghost.decrypt()).ghost.reveal(admin)


def test_foreign_keyhost_and_foreign_token(tmp_path: Path, dataset: gp.Dataset, keyhost: KeyhostProcess) -> None:
    enc = gp.encrypt(pl.DataFrame({"x": [1, 2]}), dataset, {"x": gp.integer()})
    with gp.Keyhost.local(tmp_path / "other") as other:
        other_admin = other.admin()
        with pytest.raises(gp.CiphertextError, match="encrypted under keyhost"):
            enc.select(pl.col("x").ghost.sum()).ghost.reveal(other_admin)
        with pytest.raises(gp.AuthenticationError):
            gp.connect(keyhost.url, other_admin._token)


def test_sealed_values_print_clearly(dataset: gp.Dataset) -> None:
    enc = gp.encrypt(pl.DataFrame({"g": ["a", "a", "b"], "x": [1, 2, 3]}), dataset, {"x": gp.integer()})
    out = enc.group_by("g", maintain_order=True).agg(pl.col("x").ghost.mean())
    labels = out["x"].ext.storage().struct.field("label").to_list()
    assert labels == ["<sealed mean(x) over 2 rows>", "<sealed mean(x) over 1 row>"]
    assert "sealed" in str(out)


def test_empty_and_all_null_groups(admin: gp.Session, dataset: gp.Dataset) -> None:
    enc = gp.encrypt(
        pl.DataFrame({"g": [1, 1, 2], "x": [None, None, 5]}, schema={"g": pl.Int64, "x": pl.Int64}),
        dataset,
        {"x": gp.integer()},
    )
    out = enc.group_by("g").agg(pl.col("x").ghost.sum().alias("s"), pl.col("x").ghost.mean().alias("m")).sort("g")
    got = out.ghost.reveal(admin)
    assert_series_equal(got["s"], pl.Series("s", [0, 5]))
    assert_series_equal(got["m"], pl.Series("m", [None, 5.0]))


def test_sum_beyond_64_bits_stays_exact(admin: gp.Session, dataset: gp.Dataset) -> None:
    big = 2**62
    enc = gp.encrypt(pl.DataFrame({"x": [big] * 8}), dataset, {"x": gp.integer()})
    out = enc.select(pl.col("x").ghost.sum()).ghost.reveal(admin)
    assert out["x"].dtype == pl.Int128
    assert out["x"][0] == 8 * big


def test_means_of_dates_datetimes_and_booleans(admin: gp.Session, dataset: gp.Dataset) -> None:
    df = pl.DataFrame(
        {
            "d": [dt.date(2000, 1, 1), dt.date(2000, 1, 3), None],
            "t": [dt.datetime(2000, 1, 1), dt.datetime(2000, 1, 2), dt.datetime(2000, 1, 3)],
            "b": [True, False, True],
        }
    )
    enc = gp.encrypt(df, dataset, {"d": gp.date(), "t": gp.datetime(), "b": gp.boolean()})
    got = enc.select(
        pl.col("d").ghost.mean(),
        pl.col("t").ghost.mean(),
        pl.col("b").ghost.mean(),
        pl.col("b").ghost.sum().alias("bs"),
    ).ghost.reveal(admin)
    assert got["d"][0] == dt.datetime(2000, 1, 2)
    assert got["t"][0] == dt.datetime(2000, 1, 2)
    assert got["b"][0] == pytest.approx(2 / 3)
    assert got["bs"][0] == 2
