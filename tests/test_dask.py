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


def test_unmergeable_statistics_and_pseudonyms_are_refused_up_front(
    admin: gp.Session, client: object, tmp_path: Path, dataset: gp.Dataset
) -> None:
    df = pl.DataFrame({"s": ["a", "b", "a", "c"], "x": [1, 2, 3, 4], "y": [4, 3, 2, 1]})
    spec = {"s": gp.text(group=True), "x": gp.integer(bounds=(0, 10)), "y": gp.integer(bounds=(0, 10))}
    p = tmp_path / "moments.parquet"
    gp.encrypt(df, dataset, spec, products=[("x", "y")]).write_parquet(p)
    lf = pl.scan_parquet([str(p)])
    for q in (lf.select(pl.col("x").ghost.var()), lf.select(gp.cov("x", "y"))):
        assert q.ghost.collect(admin).height == 1  # fine in one process
        with pytest.raises(gp.UnsupportedOperation, match="does not merge second moments"):
            gp.dask.collect(q, admin, client)
    keyed = lf.with_columns(k=pl.col("s").ghost.key()).group_by("k").agg(pl.col("x").ghost.sum())
    with pytest.raises(gp.UnsupportedOperation, match=r"does not merge ghost.key\(\) pseudonyms"):
        gp.dask.collect(keyed, admin, client)
