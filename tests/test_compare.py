"""Filters over ciphertext: order comparisons with keyhost-issued tokens (the `ord` facet)."""

from __future__ import annotations

import base64
import datetime as dt
import random
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import ghostpii as gp
from conftest import DATA, KeyhostProcess
from ghostpii import _internal


def _plain_age(col: pl.Expr, as_of: dt.date) -> pl.Expr:
    before = (col.dt.month() > as_of.month) | ((col.dt.month() == as_of.month) & (col.dt.day() > as_of.day))
    return as_of.year - col.dt.year().cast(pl.Int64) - before.cast(pl.Int64)


def _birth_dates(n: int = 3000) -> pl.DataFrame:
    rng = random.Random(11)
    start, end = dt.date(1900, 1, 1), dt.date(2100, 12, 31)
    days = (end - start).days
    dates: list[dt.date | None] = [start + dt.timedelta(days=rng.randrange(days + 1)) for _ in range(n)]
    special = [dt.date(1900, 1, 1), dt.date(2100, 12, 31), dt.date(2000, 2, 29), dt.date(2004, 2, 29),
               dt.date(2003, 2, 28), dt.date(2003, 3, 1), dt.date(1904, 2, 29), dt.date(2096, 2, 29),
               dt.date(2005, 2, 28), dt.date(2005, 3, 1), None, None]  # fmt: skip
    dates += special
    return pl.DataFrame({"id": range(len(dates)), "dob": pl.Series(dates, dtype=pl.Date)})


@pytest.fixture()
def births(tmp_path: Path, dataset: gp.Dataset) -> tuple[pl.DataFrame, Path]:
    df = _birth_dates().with_columns(income=(pl.col("id") * 37 % 1000).cast(pl.Int64))
    enc = gp.encrypt(df, dataset, {"dob": gp.date(compare=True), "income": gp.integer(bounds=(0, 1000), compare=True)})
    path = tmp_path / "births.parquet"
    enc.write_parquet(path)
    return df, path


def _analyst(keyhost: KeyhostProcess, admin: gp.Session, ds: gp.Dataset, allows: list[gp.allow.Allow]) -> gp.Session:
    token = admin.grant(f"cmp_{ds.name}_{random.randrange(10**9)}", ds, allows)
    assert token is not None
    return gp.connect(keyhost.url, token)


AS_OFS = [dt.date(2024, 2, 29), dt.date(2025, 2, 28), dt.date(2025, 3, 1), dt.date(2000, 1, 1)]


def test_older_and_younger_than_equal_plaintext_row_for_row(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset, births: tuple[pl.DataFrame, Path]
) -> None:
    df, path = births
    an = _analyst(keyhost, admin, dataset, [gp.allow.compare("dob")])
    for as_of in AS_OFS:
        for years in (0, 18, 21, 65, 100):
            got = pl.scan_parquet(path).filter(pl.col("dob").ghost.older_than(years, as_of=as_of)).select("id")
            want = df.filter(_plain_age(pl.col("dob"), as_of) >= years).select("id")
            assert got.ghost.collect(an)["id"].to_list() == want["id"].to_list(), (as_of, years)
            young = pl.scan_parquet(path).filter(pl.col("dob").ghost.younger_than(years, as_of=as_of)).select("id")
            want_y = df.filter(_plain_age(pl.col("dob"), as_of) < years).select("id")
            assert young.ghost.collect(an)["id"].to_list() == want_y["id"].to_list(), (as_of, years)


def test_feb_29_birthdays(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    df = pl.DataFrame({"dob": [dt.date(2004, 2, 29)]})
    enc = gp.encrypt(df, dataset, {"dob": gp.date(compare=True)})
    q = enc.lazy().select(
        a=pl.col("dob").ghost.older_than(21, as_of=dt.date(2025, 2, 28)),
        b=pl.col("dob").ghost.older_than(21, as_of=dt.date(2025, 3, 1)),
        c=pl.col("dob").ghost.older_than(20, as_of=dt.date(2024, 2, 29)),
        d=pl.col("dob").ghost.older_than(21, as_of=dt.date(2024, 2, 28)),
    )
    assert q.ghost.collect(admin).row(0) == (False, True, True, False)


def test_order_comparisons_between_and_nulls(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset, births: tuple[pl.DataFrame, Path]
) -> None:
    df, path = births
    an = _analyst(keyhost, admin, dataset, [gp.allow.compare("dob"), gp.allow.compare("income")])
    c = dt.date(1980, 6, 15)
    got = (
        pl.scan_parquet(path)
        .with_columns(
            lt=pl.col("dob").ghost.lt(c),
            le=pl.col("dob").ghost.le(c),
            gt=pl.col("dob").ghost.gt(c),
            ge=pl.col("dob").ghost.ge(c),
            btw=pl.col("dob").ghost.between(dt.date(1950, 1, 1), c),
            btw_open=pl.col("income").ghost.between(100, 200, closed="none"),
            inc_lt=pl.col("income").ghost.lt(499.5),
            inc_ge=pl.col("income").ghost.ge(499.5),
            label=pl.when(pl.col("income").ghost.gt(900)).then(pl.lit("high")).otherwise(pl.lit("low")),
        )
        .select("id", "lt", "le", "gt", "ge", "btw", "btw_open", "inc_lt", "inc_ge", "label")
        .ghost.collect(an)
    )
    want = df.select(
        "id",
        lt=pl.col("dob") < c,
        le=pl.col("dob") <= c,
        gt=pl.col("dob") > c,
        ge=pl.col("dob") >= c,
        btw=pl.col("dob").is_between(dt.date(1950, 1, 1), c),
        btw_open=pl.col("income").is_between(100, 200, closed="none"),
        inc_lt=pl.col("income") < 499.5,
        inc_ge=pl.col("income") >= 499.5,
        label=pl.when(pl.col("income") > 900).then(pl.lit("high")).otherwise(pl.lit("low")),
    )
    assert_frame_equal(got, want)
    assert got["lt"].null_count() == 2, "nulls give null"


def test_bucketize(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset,
                   births: tuple[pl.DataFrame, Path]) -> None:  # fmt: skip
    df, path = births
    breaks = [dt.date(1920, 1, 1), dt.date(1950, 1, 1), dt.date(2000, 2, 29), dt.date(2050, 1, 1)]
    got = pl.scan_parquet(path).select("id", b=pl.col("dob").ghost.bucketize(breaks)).ghost.collect(admin)
    want = df.select(
        "id",
        b=pl.when(pl.col("dob").is_null())
        .then(None)
        .otherwise(sum((pl.col("dob") >= x).cast(pl.UInt32) for x in breaks)),  # type: ignore[arg-type]
    ).with_columns(pl.col("b").cast(pl.UInt32))
    assert_frame_equal(got, want)


def test_two_round_trips_with_aggregates_per_group(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset, births: tuple[pl.DataFrame, Path]
) -> None:
    df, path = births
    an = _analyst(keyhost, admin, dataset, [gp.allow.compare("dob"), gp.allow.aggregate("income")])
    as_of = dt.date(2025, 1, 1)
    q = (
        pl.scan_parquet(path)
        .with_columns(g=pl.col("id") % 7)
        .filter(pl.col("dob").ghost.younger_than(120, as_of=as_of))
        .group_by("g")
        .agg(
            old=pl.col("income").ghost.sum().filter(pl.col("dob").ghost.older_than(65, as_of=as_of)),
            adults=pl.col("income").ghost.sum().filter(pl.col("dob").ghost.older_than(18, as_of=as_of)),
            n=pl.len(),
        )
        .sort("g")
    )
    an.reset_stats()
    got = q.ghost.collect(an)
    assert an.stats()["round_trips"] == 2, an.stats()
    age = _plain_age(pl.col("dob"), as_of)
    want = (
        df.with_columns(g=pl.col("id") % 7)
        .filter(age < 120)
        .group_by("g")
        .agg(
            old=pl.col("income").filter(age >= 65).sum(),
            adults=pl.col("income").filter(age >= 18).sum(),
            n=pl.len(),
        )
        .sort("g")
    )
    assert_frame_equal(got, want)


def test_plain_collect_fetches_each_token_once(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    df = pl.DataFrame({"x": list(range(200_000))})
    enc = gp.encrypt(df, dataset, {"x": gp.integer(bounds=(0, 1_000_000), compare=True)})
    an = _analyst(keyhost, admin, dataset, [gp.allow.compare("x")])
    _internal.clear_tokens()
    an.reset_stats()
    # many morsels and threads, two constants used three times
    out = (
        enc.lazy()
        .select(
            a=pl.col("x").ghost.lt(1234).sum(),
            b=pl.col("x").ghost.ge(150_000).sum(),
            c=pl.col("x").ghost.lt(1234).sum(),
        )
        .collect()
    )
    assert out.row(0) == (1234, 50_000, 1234)
    assert an.stats()["descriptors"] == 2, an.stats()


def test_rldata500_birth_dates(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    df = pl.read_csv(DATA / "rldata500.csv").with_columns(dob=pl.date(pl.col("by"), pl.col("bm"), pl.col("bd")))
    enc = gp.encrypt(df.select("uniqueID", "dob"), dataset, {"dob": gp.date(compare=True)})
    an = _analyst(keyhost, admin, dataset, [gp.allow.compare("dob")])
    for as_of, years in ((dt.date(2000, 1, 1), 40), (dt.date(2024, 2, 29), 65), (dt.date(1990, 6, 30), 18)):
        got = enc.lazy().filter(pl.col("dob").ghost.older_than(years, as_of=as_of)).select("uniqueID")
        want = df.filter(_plain_age(pl.col("dob"), as_of) >= years).select("uniqueID")
        assert_frame_equal(got.ghost.collect(an), want)


def test_grants_constrain_constants(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    enc = gp.encrypt(pl.DataFrame({"x": [1, 5, 9]}), dataset, {"x": gp.integer(bounds=(0, 10), compare=True)})
    none = _analyst(keyhost, admin, dataset, [gp.allow.aggregate("x")])
    with pytest.raises(gp.PermissionDenied, match="compare"):
        enc.lazy().filter(pl.col("x").ghost.lt(5)).ghost.collect(none)
    fixed = _analyst(keyhost, admin, dataset, [gp.allow.compare("x", constants=[5])])
    assert enc.lazy().filter(pl.col("x").ghost.lt(5)).ghost.collect(fixed).height == 1
    with pytest.raises(gp.PermissionDenied) as e:
        enc.lazy().filter(pl.col("x").ghost.lt(6)).ghost.collect(fixed)
    assert e.value.reason == "constant_not_allowed"
    ranged = _analyst(keyhost, admin, dataset, [gp.allow.compare("x", range=(2, 8), max_constants=2)])
    enc.lazy().filter(pl.col("x").ghost.lt(3)).ghost.collect(ranged)
    enc.lazy().filter(pl.col("x").ghost.lt(4)).ghost.collect(ranged)
    enc.lazy().filter(pl.col("x").ghost.lt(4)).ghost.collect(ranged)  # same constant again: fine
    with pytest.raises(gp.PermissionDenied) as e:
        enc.lazy().filter(pl.col("x").ghost.lt(7)).ghost.collect(ranged)
    assert e.value.reason == "max_constants"
    audit = admin.audit(dataset).filter(pl.col("operation") == "compare")
    assert {"issued", "refused"} <= set(audit["decision"].to_list())
    assert any("6" in p for p in audit["params"].to_list()), "the refused constant is in the audit"


def test_errors_before_anything_runs(dataset: gp.Dataset) -> None:
    enc = gp.encrypt(
        pl.DataFrame({"d": [dt.date(2000, 1, 1)], "n": [1]}), dataset, {"d": gp.date(compare=True), "n": gp.integer()}
    )
    with pytest.raises(gp.GhostError, match="cannot compare an encrypted column with '2000-01-01'"):
        pl.col("d").ghost.lt("2000-01-01")  # type: ignore[arg-type]
    with pytest.raises(pl.exceptions.PolarsError, match="cannot compare date column 'd' with the number constant"):
        enc.lazy().filter(pl.col("d").ghost.lt(5)).collect_schema()
    with pytest.raises(pl.exceptions.PolarsError, match=r"encrypt it with gp.integer\(compare=True\)"):
        enc.lazy().filter(pl.col("n").ghost.lt(5)).collect_schema()


def test_token_of_another_column_or_epoch_is_rejected(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    enc = gp.encrypt(
        pl.DataFrame({"a": [1, 2], "b": [1, 2]}),
        dataset,
        {"a": gp.integer(bounds=(0, 9), compare=True), "b": gp.integer(bounds=(0, 9), compare=True)},
    )
    meta_a, meta_b = enc.schema["a"].meta(), enc.schema["b"].meta()  # type: ignore[attr-defined]
    tok_a = admin.answer_keys(
        [
            {
                "op": "compare",
                "dataset_id": meta_a["dataset_id"],
                "column_id": meta_a["column_id"],
                "epoch": meta_a["epoch"],
                "constant": 1,
            }
        ]  # fmt: skip
    )[0]["token"]
    need_b = {"keyhost": meta_b["keyhost"], "dataset_id": meta_b["dataset_id"], "column_id": meta_b["column_id"],
              "epoch": meta_b["epoch"], "constant": 1}  # fmt: skip
    _internal.clear_tokens()
    _internal.insert_tokens([need_b], [base64.b64decode(tok_a)])
    with pytest.raises(pl.exceptions.PolarsError, match="another column or key epoch"):
        enc.lazy().select(pl.col("b").ghost.lt(1)).collect()
    _internal.clear_tokens()


def test_right_ciphertexts_differ_for_equal_values(dataset: gp.Dataset) -> None:
    enc = gp.encrypt(pl.DataFrame({"d": [dt.date(2000, 1, 1)] * 3}), dataset, {"d": gp.date(compare=True)})
    ords = enc["d"].ext.storage().struct.field("ord")
    assert ords.n_unique() == 3
    assert len(ords[0]) == 2 + 16 + 3 * 64, "a date is three 8-bit blocks"


@pytest.mark.parametrize("unit", ["ms", "us", "ns"])
def test_datetime_comparisons(admin: gp.Session, dataset: gp.Dataset, unit: str) -> None:
    ts = [
        dt.datetime(1900, 1, 1),
        dt.datetime(2004, 2, 29, 12, 30),
        dt.datetime(2005, 3, 1, 0, 0, 0, 1000),
        None,
        dt.datetime(2099, 12, 31, 23, 59, 59),
    ]
    df = pl.DataFrame({"t": pl.Series(ts, dtype=pl.Datetime(unit))})  # type: ignore[arg-type]
    enc = gp.encrypt(df, dataset, {"t": gp.datetime(compare=True)})
    c = dt.datetime(2005, 3, 1, 0, 0, 0, 500)
    as_of = dt.datetime(2025, 2, 28, 13, 0)
    got = enc.lazy().select(
        lt=pl.col("t").ghost.lt(c),
        ge=pl.col("t").ghost.ge(c),
        on_date=pl.col("t").ghost.lt(dt.date(2005, 3, 1)),
        old=pl.col("t").ghost.older_than(21, as_of=as_of),
    )
    want = df.select(
        lt=pl.col("t") < c,
        ge=pl.col("t") >= c,
        on_date=pl.col("t") < dt.datetime(2005, 3, 1),
        old=pl.col("t") <= dt.datetime(2004, 2, 28, 13, 0),
    )
    assert_frame_equal(got.ghost.collect(admin), want)


def test_plain_collect_refusal_names_the_grant(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    enc = gp.encrypt(pl.DataFrame({"x": [1, 2]}), dataset, {"x": gp.integer(bounds=(0, 9), compare=True)})
    _analyst(keyhost, admin, dataset, [gp.allow.aggregate("x")])  # connected, active, no compare grant
    _internal.clear_tokens()
    with pytest.raises(pl.exceptions.ComputeError, match="PermissionDenied.*no 'compare' grant on column 'x'"):
        enc.lazy().filter(pl.col("x").ghost.lt(2)).collect()
