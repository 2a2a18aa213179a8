"""Ordinary Polars operations on an encrypted column are refused before they run (lf.ghost.collect,
gp.reveal) with an error that says what to use instead. Against a real keyhost."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import pytest

import ghostpii as gp

Query = Callable[[pl.LazyFrame], pl.LazyFrame]

ORDERING: dict[str, Query] = {
    "sort": lambda lf: lf.sort("x"),
    "top_k": lambda lf: lf.top_k(2, by="x"),
    "rank": lambda lf: lf.select(pl.col("x").rank()),
    "arg_max": lambda lf: lf.select(pl.col("x").arg_max()),
    "sort_by": lambda lf: lf.select(pl.col("v").sort_by("x")),
}
GROUPING: dict[str, Query] = {
    "group_by": lambda lf: lf.group_by("x").agg(pl.col("v").sum()),
    "join": lambda lf: lf.join(lf.select("x", w=pl.col("v")), on="x"),
    "unique": lambda lf: lf.unique(subset="x"),
    "n_unique": lambda lf: lf.select(pl.col("x").n_unique()),
    "expr_unique": lambda lf: lf.select(pl.col("x").unique()),
    "value_counts": lambda lf: lf.select(pl.col("x").value_counts()),
    "mode": lambda lf: lf.select(pl.col("x").mode()),
    "hash": lambda lf: lf.select(pl.col("x").hash()),
    "is_duplicated": lambda lf: lf.filter(pl.col("x").is_duplicated()),
    "over": lambda lf: lf.select(pl.col("v").sum().over("x")),
    "group_by_then_ghost_sum": lambda lf: lf.group_by("x").agg(pl.col("y").ghost.sum()),
}


@pytest.fixture()
def enc(dataset: gp.Dataset) -> pl.DataFrame:
    df = pl.DataFrame({"x": [3, 1, 3, 2], "y": [10, 20, 30, 40], "v": [1, 2, 3, 4], "g": ["a", "b", "a", "b"]})
    return gp.encrypt(df, dataset, {"x": gp.integer(bounds=(0, 9)), "y": gp.integer(bounds=(0, 99))})


@pytest.mark.parametrize("name", ORDERING)
def test_ordering_by_ciphertext_is_refused(admin: gp.Session, enc: pl.DataFrame, name: str) -> None:
    with pytest.raises(gp.UnsupportedOperation, match=r"encrypted column 'x' orders rows by ciphertext.*ghost\.lt"):
        gp.collect(ORDERING[name](enc.lazy()), admin)


@pytest.mark.parametrize("name", GROUPING)
def test_grouping_joining_distinct_by_ciphertext_is_refused(admin: gp.Session, enc: pl.DataFrame, name: str) -> None:
    with pytest.raises(gp.UnsupportedOperation, match=r"encrypted column 'x' compares ciphertexts.*plaintext column"):
        GROUPING[name](enc.lazy()).ghost.collect(admin)


def test_polars_really_runs_these_on_ciphertext(enc: pl.DataFrame) -> None:
    """Why the guard exists: unguarded, Polars answers from row ids and bytes (3 appears twice)."""
    assert enc.select(pl.col("x").n_unique()).item() == 4
    assert enc.group_by("x").agg(pl.len()).height == 4


def test_the_same_queries_on_plaintext_keys_run(admin: gp.Session, enc: pl.DataFrame) -> None:
    lf = enc.lazy()
    out = gp.collect(lf.group_by("g").agg(gp.sum("y")).sort("g"), admin)
    assert out.rows() == [("a", 40), ("b", 60)]
    assert gp.collect(lf.sort("v").select("v").unique().sort("v"), admin)["v"].to_list() == [1, 2, 3, 4]
    assert gp.collect(lf.join(lf.select("g", w=pl.col("v")), on="g").select(pl.len()), admin).item() == 8


def test_reveal_refuses_rows_grouped_by_ciphertext(admin: gp.Session, enc: pl.DataFrame) -> None:
    grouped = enc.group_by("x").agg(pl.col("y").ghost.sum())  # eager: Polars runs it
    with pytest.raises(gp.UnsupportedOperation, match="encrypted column 'x'.*group by a plaintext column"):
        gp.reveal(grouped, admin)
    with pytest.raises(gp.UnsupportedOperation):
        grouped.ghost.reveal(admin)
    assert gp.reveal(grouped.drop("x"), admin)["y"].sum() == 100, "dropping the ciphertext key is allowed"
