"""gp.dask.collect: a query over many encrypted Parquet files on a 2-worker LocalCluster, merged
from sealed partials and revealed with ONE keyhost request; equal to the single-process query."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

import ghostpii as gp

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.fixture()
def files(tmp_path: Path, dataset: gp.Dataset) -> list[str]:
    out = []
    for i in range(4):
        df = pl.DataFrame({"g": [(r + i) % 3 for r in range(50)], "x": [r + 100 * i for r in range(50)]})
        enc = gp.encrypt(df, dataset, {"x": gp.integer(bounds=(0, 1000), compare=True)})
        p = tmp_path / f"part{i}.parquet"
        enc.write_parquet(p)
        out.append(str(p))
    return out


def test_grouped_sums_equal_the_single_process_query(admin: gp.Session, client: object, files: list[str]) -> None:
    q = (
        pl.scan_parquet(files)
        .filter(pl.col("x").ghost.ge(120))
        .group_by("g")
        .agg(pl.col("x").ghost.sum(), pl.col("x").ghost.mean().alias("m"))
    )
    want = q.ghost.collect(admin).sort("g")
    admin.reset_stats()
    got = gp.dask.collect(q, admin, client).sort("g")
    assert got.equals(want)
    # one request for the comparison tokens, one for every answer key
    assert admin.stats()["answer_key_requests"] == 2
    plain = pl.concat(
        pl.DataFrame({"g": [(r + i) % 3 for r in range(50)], "x": [r + 100 * i for r in range(50)]}) for i in range(4)
    )
    assert (
        got["x"].to_list()
        == plain.filter(pl.col("x") >= 120).group_by("g").agg(pl.col("x").sum()).sort("g")["x"].to_list()
    )
    assert gp.dask.collect(q, admin, client).sort("g").equals(want), "a plan already run is split again"


def test_global_aggregate_and_refusals(admin: gp.Session, client: object, files: list[str]) -> None:
    lf = pl.scan_parquet(files)
    got = gp.dask.collect(lf.select(pl.col("x").ghost.sum()), admin, client)
    assert got["x"].to_list() == lf.select(pl.col("x").ghost.sum()).ghost.collect(admin)["x"].to_list()
    with pytest.raises(gp.UnsupportedOperation, match="neither sealed nor group keys"):
        gp.dask.collect(lf.group_by("g").agg(pl.len(), pl.col("x").ghost.sum()), admin, client)


def test_second_moments_and_encrypted_keys_equal_the_single_process_query(
    admin: gp.Session, client: object, tmp_path: Path, dataset: gp.Dataset
) -> None:
    paths = []
    for i in range(3):
        df = pl.DataFrame(
            {
                "g": [r % 2 for r in range(40)],
                "s": [f"n{(r + i) % 4}" for r in range(40)],
                "x": [(r * 7 + i) % 11 for r in range(40)],
                "y": [(r * 3 + 2 * i) % 9 for r in range(40)],
            }
        )
        spec = {"s": gp.text(group=True), "x": gp.integer(bounds=(0, 10)), "y": gp.integer(bounds=(0, 10))}
        p = tmp_path / f"moments{i}.parquet"
        gp.encrypt(df, dataset, spec, products=[("x", "y")]).write_parquet(p)
        paths.append(str(p))
    lf = pl.scan_parquet(paths)
    for q in (
        lf.select(pl.col("x").ghost.var(), gp.cov("x", "y").alias("cov"), gp.corr("x", "y").alias("corr")),
        lf.group_by("g").agg(pl.col("x").ghost.std(), gp.cov("x", "y").alias("cov")),
    ):
        one = q.ghost.collect(admin)
        got = gp.dask.collect(q, admin, client)
        if "g" in one.columns:
            one, got = one.sort("g"), got.sort("g")
        for c in one.columns:
            assert got[c].to_list() == pytest.approx(one[c].to_list(), rel=1e-12), c
    # group_by on encrypted keys: one pad request for the files' rows, one pseudonym key for all
    # workers, so a value's rows in different files land in one group
    keyed = lf.with_columns(k=pl.col("s").ghost.key()).group_by("k").agg(pl.col("x").ghost.sum())
    admin.reset_stats()
    got = gp.dask.collect(keyed, admin, client)
    assert admin.stats()["answer_key_requests"] == 2  # the pads, then the reveal
    pads = admin.audit(dataset).filter(pl.col("operation") == "pads")
    assert pads["rid_count"].to_list() == [120], pads  # every row of the files, audited once
    plain = pl.concat(
        [
            pl.DataFrame({"s": [f"n{(r + i) % 4}" for r in range(40)], "x": [(r * 7 + i) % 11 for r in range(40)]})
            for i in range(3)
        ]
    )
    expected = sorted(plain.group_by("s").agg(pl.col("x").sum())["x"].to_list())
    assert got.height == 4 and sorted(got["x"].to_list()) == expected
    single = keyed.ghost.collect(admin)
    assert sorted(single["x"].to_list()) == expected


def test_quantiles_merge_and_equal_the_single_process_query(
    admin: gp.Session, client: object, files: list[str]
) -> None:
    q = (
        pl.scan_parquet(files)
        .filter(pl.col("x").ghost.ge(30))
        .group_by("g")
        .agg(
            pl.col("x").ghost.median().alias("med"),
            pl.col("x").ghost.quantile(0.9).alias("p90"),
            pl.col("x").ghost.sum(),
        )
    )
    want = q.ghost.collect(admin).sort("g")
    got = gp.dask.collect(q, admin, client).sort("g")
    assert got.equals(want), (got, want)
    plain = pl.concat(
        pl.DataFrame({"g": [(r + i) % 3 for r in range(50)], "x": [r + 100 * i for r in range(50)]}) for i in range(4)
    )
    exp = (
        plain.filter(pl.col("x") >= 30)
        .group_by("g")
        .agg(pl.col("x").median().alias("med"), pl.col("x").quantile(0.9).alias("p90"))
        .sort("g")
    )
    assert got["med"].to_list() == exp["med"].to_list() and got["p90"].to_list() == exp["p90"].to_list()
    # every file holds rows of every group: each group's value is merged from 4 partials
    whole = gp.dask.collect(pl.scan_parquet(files).select(pl.col("x").ghost.median()), admin, client)
    assert whole["x"].to_list() == [plain["x"].median()]


def test_partials_of_many_groups_merge_in_one_call_with_null_partials(admin: gp.Session, dataset: gp.Dataset) -> None:
    df = pl.DataFrame({"g": [0, 0, 1, 1, 2], "x": [1, 2, 3, 4, 5]})
    enc = gp.encrypt(df, dataset, {"x": gp.integer(bounds=(0, 10))})

    def partial(rows: pl.DataFrame) -> pl.DataFrame:
        sealed = rows.lazy().group_by("g").agg(pl.col("x").ghost.sum()).collect()
        return sealed.with_columns(pl.col("x").ext.storage())

    a, b = partial(enc.slice(0, 3)), partial(enc.slice(3, 2))  # group 1 is split across both
    # group 3 has one partial, and it is null (what an outer join can leave)
    null = a.head(1).with_columns(pl.lit(3, dtype=a["g"].dtype).alias("g"), pl.lit(None, dtype=a["x"].dtype).alias("x"))
    merged = gp.dask.merge_partials([a, b, null], ["g"], ["x"])
    assert merged.height == 4
    out = gp.reveal(merged, admin).sort("g")
    assert out["x"].to_list() == [3, 7, 5, None]


def test_quantile_partials_merge_in_one_call_with_null_partials(admin: gp.Session, dataset: gp.Dataset) -> None:
    df = pl.DataFrame({"g": [0, 0, 1, 1, 1, 2], "x": [1, 9, 3, 4, 8, 5]})
    enc = gp.encrypt(df, dataset, {"x": gp.integer(bounds=(0, 10), compare=True)})

    def partial(rows: pl.DataFrame) -> pl.DataFrame:
        sealed = rows.lazy().group_by("g").agg(pl.col("x").ghost.median()).collect()
        return sealed.with_columns(pl.col("x").ext.storage())

    a, b = partial(enc.slice(0, 3)), partial(enc.slice(3, 3))  # group 1 is split across both
    null = a.head(1).with_columns(pl.lit(3, dtype=a["g"].dtype).alias("g"), pl.lit(None, dtype=a["x"].dtype).alias("x"))
    merged = gp.dask.merge_partials([a, b, null], ["g"], [], ["x"])
    assert merged.height == 4
    out = gp.reveal(merged, admin).sort("g")
    assert out["x"].to_list() == [5.0, 4.0, 5.0, None]
