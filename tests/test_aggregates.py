"""End to end: encrypt → Parquet → scan_parquet → filter/group_by → reveal == plaintext Polars."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import ghostpii as gp
from conftest import DATA, KeyhostProcess

INSURANCE_SCHEMA = {
    "age": gp.integer(bounds=(0, 130)),
    "bmi": gp.number(decimals=3, bounds=(0, 100)),
    "children": gp.integer(bounds=(0, 20)),
    "charges": gp.number(decimals=4, bounds=(0, 100_000)),
    "sex": gp.text(),
}


@pytest.fixture()
def insurance(tmp_path: Path, dataset: gp.Dataset) -> tuple[pl.DataFrame, Path]:
    df = pl.read_csv(DATA / "insurance.csv")
    enc = gp.encrypt(df, dataset, INSURANCE_SCHEMA)
    path = tmp_path / "insurance.parquet"
    enc.write_parquet(path)
    return df, path


def _analyst(
    keyhost: KeyhostProcess, admin: gp.Session, ds: gp.Dataset, allows: list[gp.allow.Allow], name: str = "analyst"
) -> gp.Session:
    token = admin.grant(f"{name}_{ds.name}", ds, allows)
    assert token is not None
    return gp.connect(keyhost.url, token)


def test_group_by_after_filter_equals_plaintext(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset, insurance: tuple[pl.DataFrame, Path]
) -> None:
    df, path = insurance
    an = _analyst(keyhost, admin, dataset, [gp.allow.aggregate(c) for c in ("age", "bmi", "children", "charges")])
    q = (
        pl.scan_parquet(path)
        .filter(pl.col("smoker") == "no")
        .group_by("region")
        .agg(
            pl.col("charges").ghost.sum().alias("charges_sum"),
            pl.col("charges").ghost.mean().alias("charges_mean"),
            pl.col("bmi").ghost.mean().alias("bmi_mean"),
            pl.col("age").ghost.sum().alias("age_sum"),
            pl.col("children").ghost.count().alias("n"),
        )
        .sort("region")
    )
    an.reset_stats()
    got = q.ghost.collect(an)
    assert an.stats()["answer_key_requests"] == 1, "all groups and columns revealed in ONE request"
    assert an.stats()["round_trips"] == 1
    want = (
        df.lazy()
        .filter(pl.col("smoker") == "no")
        .group_by("region")
        .agg(
            pl.col("charges").round(4).sum().alias("charges_sum"),
            pl.col("charges").round(4).mean().alias("charges_mean"),
            pl.col("bmi").round(3).mean().alias("bmi_mean"),
            pl.col("age").sum().cast(pl.Int64).alias("age_sum"),
            pl.col("children").count().alias("n"),
        )
        .sort("region")
        .collect()
    )
    assert got.schema == want.schema
    # within fixed-point resolution: 1338 rows x half a unit of 10^-4
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-12, abs_tol=1338 * 0.5e-4)


def test_select_eager_and_lazy(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset, insurance: tuple[pl.DataFrame, Path]
) -> None:
    df, path = insurance
    an = _analyst(keyhost, admin, dataset, [gp.allow.aggregate("charges"), gp.allow.aggregate("age")])
    eager = pl.read_parquet(path).select(pl.col("charges").ghost.sum(), pl.col("age").ghost.mean())
    assert eager["charges"].ext.storage().struct.field("label")[0] == "<sealed sum(charges) over 1,338 rows>"
    assert "<sealed sum(charges)" in str(eager)
    got = gp.reveal(eager, an)
    assert got["charges"][0] == pytest.approx(df["charges"].sum(), abs=1338 * 0.5e-4)
    assert got["age"][0] == pytest.approx(df["age"].mean(), rel=1e-12)
    got2 = pl.scan_parquet(path).select(pl.col("age").ghost.sum()).ghost.collect(an)
    assert got2["age"].dtype == pl.Int64
    assert got2["age"][0] == df["age"].sum()


def test_sealed_values_stay_sealed_with_plain_collect(admin: gp.Session, insurance: tuple[pl.DataFrame, Path]) -> None:
    _, path = insurance
    out = pl.scan_parquet(path).select(pl.col("charges").ghost.sum()).collect()
    assert isinstance(out.schema["charges"], gp.SealedType)
    assert out["charges"].ext.storage().struct.field("label")[0] == "<sealed sum(charges) over 1,338 rows>"


def test_denial_raises_and_is_audited(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset, insurance: tuple[pl.DataFrame, Path]
) -> None:
    _, path = insurance
    an = _analyst(keyhost, admin, dataset, [gp.allow.aggregate("charges")])
    with pytest.raises(gp.PermissionDenied) as e:
        pl.scan_parquet(path).select(pl.col("bmi").ghost.sum()).ghost.collect(an)
    assert "aggregate" in str(e.value) and "bmi" in str(e.value)
    with pytest.raises(gp.PermissionDenied, match="decrypt"):
        pl.scan_parquet(path).select(pl.col("charges").ghost.decrypt()).ghost.collect(an)
    audit = admin.audit(dataset)
    refused = audit.filter(pl.col("decision") == "refused")
    assert set(refused["column"].to_list()) >= {"bmi", "charges"}
    assert set(audit.filter(pl.col("decision") == "refused")["identity"].to_list()) == {f"analyst_{dataset.name}"}


def test_min_rows_refuses_small_sets(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset, insurance: tuple[pl.DataFrame, Path]
) -> None:
    _, path = insurance
    an = _analyst(keyhost, admin, dataset, [gp.allow.aggregate("charges", min_rows=10)])
    with pytest.raises(gp.PermissionDenied, match="at least 10") as e:
        pl.scan_parquet(path).head(5).select(pl.col("charges").ghost.sum()).ghost.collect(an)
    assert e.value.reason == "min_rows"
    ok = pl.scan_parquet(path).head(10).select(pl.col("charges").ghost.sum()).ghost.collect(an)
    assert ok.height == 1


def test_decrypt_rows_equals_plaintext(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset, insurance: tuple[pl.DataFrame, Path]
) -> None:
    df, path = insurance
    an = _analyst(keyhost, admin, dataset, [gp.allow.decrypt(c) for c in ("age", "charges", "sex")])
    got = (
        pl.scan_parquet(path)
        .filter(pl.col("region") == "northwest")
        .select(
            "region", pl.col("age").ghost.decrypt(), pl.col("charges").ghost.decrypt(), pl.col("sex").ghost.decrypt()
        )
        .ghost.collect(an)
    )
    want = df.filter(pl.col("region") == "northwest").select("region", "age", pl.col("charges").round(4), "sex")
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-12, abs_tol=1e-4)


def test_linear_combination_with_public_weights(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset, insurance: tuple[pl.DataFrame, Path]
) -> None:
    df, path = insurance
    an = _analyst(keyhost, admin, dataset, [gp.allow.aggregate("age"), gp.allow.aggregate("children")])
    q = (
        pl.scan_parquet(path)
        .group_by("smoker")
        .agg(gp.linear_sum({"age": 3, "children": -2}).alias("score"))
        .sort("smoker")
    )
    sealed = q.collect()
    assert sealed["score"].ext.storage().struct.field("label")[0].startswith("<sealed sum(3·age - 2·children) over")
    got = q.ghost.collect(an)
    want = df.group_by("smoker").agg((3 * pl.col("age") - 2 * pl.col("children")).sum().alias("score")).sort("smoker")
    assert_frame_equal(got, want)
    only_age = _analyst(keyhost, admin, dataset, [gp.allow.aggregate("age")], name="only_age")
    with pytest.raises(gp.PermissionDenied, match="children"):
        q.ghost.collect(only_age)


def test_linear_sum_needs_one_encryption_and_scale(dataset: gp.Dataset) -> None:
    a = gp.encrypt(pl.DataFrame({"a": [1, 2]}), dataset, {"a": gp.integer()})
    b = gp.encrypt(pl.DataFrame({"b": [1, 2]}), dataset, {"b": gp.integer()})
    with pytest.raises(pl.exceptions.PolarsError, match="different gp.encrypt calls"):
        pl.concat([a, b], how="horizontal").select(gp.linear_sum({"a": 1, "b": 1}))
    c = gp.encrypt(pl.DataFrame({"x": [1.5], "y": [2]}), dataset, {"x": gp.number(decimals=1), "y": gp.integer()})
    with pytest.raises(pl.exceptions.PolarsError, match="one fixed-point scale"):
        c.select(gp.linear_sum({"x": 1, "y": 1}))
