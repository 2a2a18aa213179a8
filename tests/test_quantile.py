"""ghost.quantile / ghost.median: a token search over the ord facet, equal to Polars on the plaintext."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

import ghostpii as gp

METHODS = ["nearest", "lower", "higher", "midpoint", "linear", "equiprobable"]
SCHEMA = {
    "i": gp.integer(bounds=(-1000, 1000), compare=True),
    "f": gp.number(decimals=2, bounds=(-500, 500), compare=True),
    "d": gp.date(compare=True),
    "u": gp.integer(compare=True),  # no bounds: the whole 64-bit domain
}


def _frame(n: int, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "g": rng.integers(0, 4, n),
            "i": rng.integers(-1000, 1001, n),
            "f": np.round(rng.uniform(-500, 500, n), 2),
            "d": [dt.date(1940, 1, 1) + dt.timedelta(days=int(x)) for x in rng.integers(0, 30000, n)],
            "u": rng.integers(-(2**62), 2**62, n),
        }
    ).with_columns(
        pl.when(pl.int_range(n) % 7 == 2).then(None).otherwise(pl.col("f")).alias("f"),
        pl.when(pl.int_range(n) % 5 == 1).then(None).otherwise(pl.col("d")).alias("d"),
    )


@pytest.fixture()
def owner_data(admin: gp.Session, dataset: gp.Dataset) -> tuple[pl.DataFrame, pl.DataFrame, gp.Session]:
    df = _frame(301)
    enc = gp.encrypt(df, dataset, SCHEMA).with_columns(df["g"])
    token = admin.grant("quantiles", dataset, [*(gp.allow.compare(c) for c in SCHEMA), gp.allow.aggregate("i")])
    return df, enc, gp.connect(admin.url, token)


def _plain(df: pl.DataFrame, exprs: list[pl.Expr]) -> pl.DataFrame:
    return df.select(exprs)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("q", [0.0, 0.1, 0.5, 0.77, 1.0])
def test_quantiles_equal_polars_with_nulls(
    owner_data: tuple[pl.DataFrame, pl.DataFrame, gp.Session], method: str, q: float
) -> None:
    df, enc, an = owner_data
    cols = ["i", "f", "d", "u"]
    an.reset_stats()
    got = enc.lazy().select([pl.col(c).ghost.quantile(q, method) for c in cols]).ghost.collect(an)  # type: ignore[arg-type]
    assert an.stats()["round_trips"] <= 8
    want = df.select([pl.col(c).quantile(q, method) for c in cols])  # type: ignore[arg-type]
    assert got.schema == want.schema
    assert got.row(0) == want.row(0)


def test_median_of_odd_and_even_counts_single_row_and_all_equal(admin: gp.Session, dataset: gp.Dataset) -> None:
    df = pl.DataFrame({"k": [1, 1, 2, 2, 2, 3, 4], "x": [5.25, -1.5, 7.0, 7.0, 7.0, 3.75, 2.0]})
    enc = gp.encrypt(df.select("x"), dataset, {"x": gp.number(decimals=2, bounds=(-10, 10), compare=True)})
    enc = enc.with_columns(df["k"])
    an = gp.connect(admin.url, admin.grant("med", dataset, [gp.allow.compare("x")]))
    for frame in (enc.head(4), enc.head(5), enc.head(1)):  # even, odd, single row
        got = frame.lazy().select(pl.col("x").ghost.median()).ghost.collect(an)["x"][0]
        assert got == df.head(frame.height)["x"].median()
    grouped = enc.lazy().group_by("k").agg(pl.col("x").ghost.median()).sort("k").ghost.collect(an)
    assert grouped.equals(df.group_by("k").agg(pl.col("x").median()).sort("k"))  # k=2: all equal


def test_group_by_searches_all_groups_together(owner_data: tuple[pl.DataFrame, pl.DataFrame, gp.Session]) -> None:
    df, enc, an = owner_data
    an.reset_stats()
    got = (
        enc.lazy()
        .group_by("g")
        .agg(pl.col("d").ghost.median(), pl.col("i").ghost.quantile(0.9, "linear").alias("i9"), gp.sum("i"))
        .sort("g")
        .ghost.collect(an)
    )
    assert an.stats()["round_trips"] <= 8
    want = df.group_by("g").agg(
        pl.col("d").median(), pl.col("i").quantile(0.9, "linear").alias("i9"), pl.col("i").sum()
    )
    assert got.equals(want.sort("g"))


def test_round_trips_stay_within_eight_with_comparisons_and_sums(
    owner_data: tuple[pl.DataFrame, pl.DataFrame, gp.Session],
) -> None:
    df, enc, an = owner_data
    an.reset_stats()
    q = enc.lazy().filter(pl.col("i").ghost.gt(0)).select(pl.col("u").ghost.median(), gp.sum("i"))
    got = q.ghost.collect(an)
    assert an.stats()["round_trips"] <= 8
    plain = df.filter(pl.col("i") > 0)
    assert got.row(0) == (plain["u"].median(), plain["i"].sum())


def test_empty_after_filter_is_null_and_the_filter_method_works(
    owner_data: tuple[pl.DataFrame, pl.DataFrame, gp.Session],
) -> None:
    df, enc, an = owner_data
    an.reset_stats()
    got = enc.lazy().filter(pl.col("g") > 99).select(pl.col("i").ghost.median(), pl.col("d").ghost.median())
    out = got.ghost.collect(an)
    assert out.row(0) == (None, None) and out.schema == {"i": pl.Float64, "d": pl.Datetime("us")}
    assert an.stats()["round_trips"] == 0
    filtered = enc.lazy().select(pl.col("i").ghost.quantile(0.5).filter(pl.col("g") == 1)).ghost.collect(an)
    assert filtered["i"][0] == df.filter(pl.col("g") == 1)["i"].quantile(0.5)


def test_quantile_needs_the_compare_grant_and_respects_max_constants(admin: gp.Session, dataset: gp.Dataset) -> None:
    df = _frame(50)
    enc = gp.encrypt(df, dataset, SCHEMA)
    none = gp.connect(admin.url, admin.grant("noq", dataset, [gp.allow.aggregate("i")]))
    with pytest.raises(gp.PermissionDenied, match="no 'compare' grant on column 'i'"):
        enc.lazy().select(pl.col("i").ghost.median()).ghost.collect(none)
    few = gp.connect(admin.url, admin.grant("fewq", dataset, [gp.allow.compare("i", max_constants=5)]))
    with pytest.raises(gp.PermissionDenied, match="max_constants") as e:
        enc.lazy().select(pl.col("i").ghost.median()).ghost.collect(few)
    assert e.value.reason == "max_constants" and "ghost.quantile() on column(s) ['i']" in str(e.value)


def test_bad_input_is_typed(owner_data: tuple[pl.DataFrame, pl.DataFrame, gp.Session], dataset: gp.Dataset) -> None:
    df, enc, an = owner_data
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pl.col("i").ghost.quantile(1.5)
    with pytest.raises(ValueError, match="interpolation"):
        pl.col("i").ghost.quantile(0.5, "cubic")
    no_ord = gp.encrypt(df.select(pl.col("i").alias("j")), dataset, {"j": gp.integer()})
    with pytest.raises(gp.UnsupportedOperation, match="needs the 'ord' facet"):
        no_ord.lazy().select(pl.col("j").ghost.median()).ghost.collect(an)
    with pytest.raises(gp.UnsupportedOperation, match="needs an encrypted column"):
        df.lazy().select(pl.col("i").ghost.median()).ghost.collect(an)


def test_sealed_quantiles_print_their_label(owner_data: tuple[pl.DataFrame, pl.DataFrame, gp.Session]) -> None:
    _, enc, _ = owner_data
    text = repr(enc.lazy().select(pl.col("i").ghost.median()).collect())
    assert "<sealed quantile(i, 0.5, linear) over 301 rows>" in text


@pytest.mark.parametrize("method", ["nearest", "linear", "midpoint"])
def test_datetimes_keep_unit_and_zone_and_an_empty_frame_gives_null(
    admin: gp.Session, dataset: gp.Dataset, method: str
) -> None:
    t = [dt.datetime(2020, 1, 1, 12, 0, 0, 123456), dt.datetime(2021, 5, 3), None, dt.datetime(2019, 2, 2, 1, 1, 1)]
    df = pl.DataFrame({"t": t}).with_columns(
        pl.col("t").dt.cast_time_unit("ms").alias("tm"), pl.col("t").dt.replace_time_zone("Europe/Paris").alias("tz")
    )
    enc = gp.encrypt(df, dataset, {c: gp.datetime(compare=True) for c in df.columns})
    an = gp.connect(admin.url, admin.grant("dtq", dataset, [gp.allow.compare(c) for c in df.columns]))
    got = enc.lazy().select([pl.col(c).ghost.quantile(0.4, method) for c in df.columns]).ghost.collect(an)  # type: ignore[arg-type]
    want = df.select([pl.col(c).quantile(0.4, method) for c in df.columns])  # type: ignore[arg-type]
    assert got.schema == want.schema and got.row(0) == want.row(0)
    empty = enc.head(0).lazy().select(pl.col("t").ghost.median()).ghost.collect(an)
    assert empty.equals(df.head(0).select(pl.col("t").median()))
