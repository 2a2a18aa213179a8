"""Repeated rows (joins, concats, samples, gathers, explode) reveal the plaintext answer.

A row counted k times contributes k·x to a masked sum; the sealed value records the
multiplicities so the keyhost counts that row's mask k times too.
"""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import ghostpii as gp
from conftest import KeyhostProcess

PLAIN = pl.DataFrame(
    {
        "g": ["a", "a", "b", "b", "c", "c", "c"],
        "x": [10, 20, 30, 40, 50, 60, 70],
        "f": [1.25, -2.5, 3.75, 0.5, 2.0, 4.25, -1.0],
        "y": [1, -2, 3, -4, 5, -6, 7],
    }
)


@pytest.fixture()
def enc(dataset: gp.Dataset) -> pl.DataFrame:
    return gp.encrypt(
        PLAIN,
        dataset,
        {
            "x": gp.integer(bounds=(-1000, 1000)),
            "f": gp.number(decimals=2, bounds=(-10, 10)),
            "y": gp.integer(bounds=(-10, 10)),
        },
    )


def _aggs() -> list[pl.Expr]:
    return [
        pl.col("x").ghost.sum().alias("sx"),
        pl.col("x").ghost.mean().alias("mx"),
        pl.col("f").ghost.sum().alias("sf"),
        pl.col("f").ghost.mean().alias("mf"),
        pl.col("x").ghost.count().alias("n"),
    ]


def _plain_aggs() -> list[pl.Expr]:
    return [
        pl.col("x").sum().alias("sx"),
        pl.col("x").mean().alias("mx"),
        pl.col("f").sum().alias("sf"),
        pl.col("f").mean().alias("mf"),
        pl.col("x").count().alias("n"),
    ]


def _same(enc_frame: pl.DataFrame, plain_frame: pl.DataFrame, admin: gp.Session, by: str | None = None) -> None:
    if by is None:
        got = enc_frame.select(_aggs()).ghost.reveal(admin)
        want = plain_frame.select(_plain_aggs())
    else:
        got = enc_frame.group_by(by).agg(_aggs()).ghost.reveal(admin).sort(by)
        want = plain_frame.group_by(by).agg(_plain_aggs()).sort(by)
    assert_frame_equal(got, want, check_dtypes=False, abs_tol=1e-9)


def test_join_with_a_dimension_table_that_repeats_rows(admin: gp.Session, enc: pl.DataFrame) -> None:
    dim = pl.DataFrame({"g": ["a", "a", "b", "c", "c", "c"], "label": ["a1", "a2", "b1", "c1", "c2", "c3"]})
    _same(enc.join(dim, on="g"), PLAIN.join(dim, on="g"), admin)
    _same(enc.join(dim, on="g"), PLAIN.join(dim, on="g"), admin, by="label")
    _same(enc.join(dim, on="g"), PLAIN.join(dim, on="g"), admin, by="g")


def test_concat_vstack_and_gathers(admin: gp.Session, enc: pl.DataFrame) -> None:
    _same(pl.concat([enc, enc]), pl.concat([PLAIN, PLAIN]), admin)
    _same(pl.concat([enc, enc, enc.head(3)]), pl.concat([PLAIN, PLAIN, PLAIN.head(3)]), admin, by="g")
    _same(enc.vstack(enc), PLAIN.vstack(PLAIN), admin)
    idx = [0, 0, 0, 4, 6, 6]
    _same(enc[idx], PLAIN[idx], admin)
    # the exact case of the issue: 170 = 2 · (10 + 20 + ... ) restricted to rows 0, 0
    assert enc[[0, 0]].select(pl.col("x").ghost.sum()).ghost.reveal(admin)["x"][0] == 20


def test_samples_with_replacement_and_explode(admin: gp.Session, enc: pl.DataFrame) -> None:
    for seed in range(3):
        s_enc = enc.with_row_index("i").sample(n=20, with_replacement=True, seed=seed)
        idx = s_enc["i"].to_list()
        _same(s_enc.drop("i"), PLAIN[idx], admin)
    rep = pl.DataFrame({"g": ["a", "b", "c"], "k": [[1, 2, 3], [1], [1, 2]]})
    _same(enc.join(rep, on="g").explode("k"), PLAIN.join(rep, on="g").explode("k"), admin, by="g")


def test_lazy_join_and_sealed_label_shows_repeats(admin: gp.Session, enc: pl.DataFrame) -> None:
    dim = pl.DataFrame({"g": ["a", "a"], "w": [1, 2]})
    lf = enc.lazy().join(dim.lazy(), on="g").select(pl.col("x").ghost.sum())
    sealed = lf.collect()
    assert "over 4 rows, 2 distinct" in str(sealed["x"].ext.storage().struct.field("label")[0])
    assert lf.ghost.collect(admin)["x"][0] == 2 * (10 + 20)


def test_linear_sum_counts_repeats(admin: gp.Session, enc: pl.DataFrame) -> None:
    twice = pl.concat([enc, enc.head(2)])
    got = twice.select(gp.linear_sum({"x": 3, "y": -2}).alias("lin")).ghost.reveal(admin)["lin"][0]
    plain = pl.concat([PLAIN, PLAIN.head(2)])
    assert got == 3 * plain["x"].sum() - 2 * plain["y"].sum()


def test_min_rows_counts_distinct_rows(
    keyhost: KeyhostProcess, admin: gp.Session, enc: pl.DataFrame, dataset: gp.Dataset
) -> None:
    token = admin.grant(f"rep_{dataset.name}", dataset, [gp.allow.aggregate("x", min_rows=3)])
    assert token is not None
    an = gp.connect(keyhost.url, token)
    # one row repeated five times is still one person
    with pytest.raises(gp.PermissionDenied, match="1 distinct rows"):
        pl.concat([enc.head(1)] * 5).select(pl.col("x").ghost.sum()).ghost.reveal(an)
