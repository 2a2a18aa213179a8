"""Second moments over ciphertext (the deg2 facet), against a real keyhost: products at rest,
variance / covariance / correlation / dot / norm / cosine equal to Polars on the same
fixed-point values, ONE descriptor per batch, grants, bad input and the linear audit."""

from __future__ import annotations

import math

import polars as pl
import pytest

import ghostpii as gp
from conftest import DATA, KeyhostProcess

SCHEMA = {
    "age": gp.integer(bounds=(0, 120)),
    "bmi": gp.number(decimals=3, bounds=(10, 60)),
    "children": gp.integer(bounds=(0, 10)),
    "charges": gp.number(decimals=2, bounds=(0, 100_000)),
}
GROUP = ("age", "bmi", "children", "charges")


def insurance() -> pl.DataFrame:
    return pl.read_csv(DATA / "insurance.csv")


def fixed(df: pl.DataFrame) -> pl.DataFrame:
    """The values as encrypted: rounded to each column's decimals."""
    return df.with_columns(pl.col("bmi").round(3), pl.col("charges").round(2))


def setup(
    keyhost: KeyhostProcess, admin: gp.Session, ds: gp.Dataset, grant: list[gp.allow.Allow] | None = None
) -> tuple[pl.DataFrame, gp.Session]:
    enc = gp.encrypt(insurance(), ds, SCHEMA, products=[GROUP])
    token = admin.grant(f"m_{ds.name}", ds, grant or [gp.allow.moments(list(GROUP), min_rows=20)])
    return enc, gp.connect(keyhost.url, token)


def close(a: float | None, b: float, rel: float = 1e-9) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


def test_products_live_in_the_storage_masked_and_survive_parquet(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset, tmp_path: object
) -> None:
    enc, an = setup(keyhost, admin, dataset)
    meta = enc.schema["age"].meta()  # type: ignore[attr-defined]
    assert [p["with"] for p in meta["products"]] == ["age", "bmi", "children", "charges"]
    assert [p["with"] for p in enc.schema["charges"].meta()["products"]] == ["charges"]  # type: ignore[attr-defined]
    st = enc["age"].ext.storage()
    fields = [f.name for f in st.dtype.fields]  # type: ignore[attr-defined]
    assert "deg2:bmi" in fields and "deg2_hi:bmi" in fields
    # nothing visible at rest: the low limbs are not the plaintext products
    plain = (insurance()["age"] * insurance()["children"]).cast(pl.UInt64)
    assert (st.struct.field("deg2:children") != plain).sum() > 1300
    path = f"{tmp_path}/enc.parquet"
    enc.write_parquet(path)
    back = pl.scan_parquet(path)
    out = back.select(pl.col("age").ghost.var()).ghost.collect(an)
    assert close(out["age"][0], insurance()["age"].var())  # type: ignore[arg-type]


def test_statistics_equal_polars_and_use_one_descriptor(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    enc, an = setup(keyhost, admin, dataset)
    an.reset_stats()
    out = (
        enc.lazy()
        .select(
            pl.col("bmi").ghost.var().alias("var"),
            pl.col("bmi").ghost.std().alias("std"),
            gp.cov("age", "charges").alias("cov"),
            gp.corr("age", "charges").alias("corr"),
            pl.col("age").ghost.dot("charges").alias("dot"),
            pl.col("charges").ghost.norm().alias("norm"),
            pl.col("bmi").ghost.cosine("children").alias("cos"),
        )
        .ghost.collect(an)
    )
    s = an.stats()
    assert s["answer_key_requests"] == 1 and s["descriptors"] == 1, s
    assert s["round_trips"] <= 2, s
    f = fixed(insurance())
    want = f.select(
        pl.col("bmi").var().alias("var"),
        pl.col("bmi").std().alias("std"),
        pl.cov("age", "charges").alias("cov"),
        pl.corr("age", "charges").alias("corr"),
        (pl.col("age") * pl.col("charges")).sum().alias("dot"),
        (pl.col("charges") ** 2).sum().sqrt().alias("norm"),
        (
            (pl.col("bmi") * pl.col("children")).sum()
            / ((pl.col("bmi") ** 2).sum() * (pl.col("children") ** 2).sum()).sqrt()
        ).alias("cos"),
    )
    for c in want.columns:
        assert close(out[c][0], want[c][0]), (c, out[c][0], want[c][0])
    assert out.schema["var"] == pl.Float64


def test_group_by_agg_per_group(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    enc, an = setup(keyhost, admin, dataset)
    an.reset_stats()
    out = (
        enc.lazy()
        .group_by("region")
        .agg(pl.col("charges").ghost.var().alias("v"), gp.corr("age", "bmi").alias("r"))
        .sort("region")
        .ghost.collect(an)
    )
    assert an.stats()["answer_key_requests"] == 1
    want = (
        fixed(insurance())
        .group_by("region")
        .agg(pl.col("charges").var().alias("v"), pl.corr("age", "bmi").alias("r"))
        .sort("region")
    )
    for a, b in zip(out.iter_rows(), want.iter_rows(), strict=True):
        assert a[0] == b[0] and close(a[1], b[1]) and close(a[2], b[2]), (a, b)


def test_missing_products_and_grants_are_named(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    df = insurance()
    enc = gp.encrypt(df, dataset, SCHEMA, products=[("age", "bmi"), ("charges",)])
    token = admin.grant(f"g_{dataset.name}", dataset, [gp.allow.moments(["age", "bmi"]), gp.allow.moments(["charges"])])
    an = gp.connect(keyhost.url, token)
    with pytest.raises(gp.UnsupportedOperation, match=r"product of 'age' and 'charges'.*products="):
        enc.lazy().select(gp.cov("age", "charges")).ghost.collect(an)
    with pytest.raises(gp.UnsupportedOperation, match=r"square of 'children'"):
        enc.lazy().select(pl.col("children").ghost.var()).ghost.collect(an)
    assert enc.lazy().select(pl.col("charges").ghost.var()).ghost.collect(an)["charges"][0] is not None
    # products granted only within one moments grant
    enc2 = gp.encrypt(
        df, admin.create_dataset(f"{dataset.name}_b", population=f"{dataset.name}_b"), SCHEMA, products=[GROUP]
    )
    ds2 = admin.dataset(f"{dataset.name}_b")
    token = admin.grant(f"g2_{dataset.name}", ds2, [gp.allow.moments(["age", "bmi"]), gp.allow.moments(["charges"])])
    an2 = gp.connect(keyhost.url, token)
    with pytest.raises(gp.PermissionDenied, match=r"'moments' grant on column 'age'.*includes column 'charges'"):
        enc2.lazy().select(gp.cov("age", "charges")).ghost.collect(an2)
    with pytest.raises(gp.PermissionDenied, match=r"'moments' grant on column 'children'") as e:
        enc2.lazy().select(pl.col("children").ghost.var()).ghost.collect(an2)
    assert e.value.missing_grant is not None and e.value.missing_grant["operation"] == "moments"
    # an aggregate grant is not a moments grant
    token = admin.grant(f"g3_{dataset.name}", ds2, [gp.allow.aggregate("bmi")])
    with pytest.raises(gp.PermissionDenied, match="moments"):
        enc2.lazy().select(pl.col("bmi").ghost.var()).ghost.collect(gp.connect(keyhost.url, token))


def test_encryption_refuses_products_that_could_wrap(admin: gp.Session, dataset: gp.Dataset) -> None:
    df = insurance()
    with pytest.raises(gp.EncryptionError, match=r"'charges'.*no declared bounds"):
        gp.encrypt(df, dataset, {"charges": gp.number(decimals=2)}, products=[("charges",)])
    with pytest.raises(gp.EncryptionError, match=r"square of 'charges'.*beyond 64 bits"):
        gp.encrypt(df, dataset, {"charges": gp.number(decimals=6, bounds=(0, 1e7))}, products=[("charges",)])
    with pytest.raises(gp.EncryptionError, match=r"'sex'.*schema does not encrypt"):
        gp.encrypt(df, dataset, SCHEMA, products=[("age", "sex")])


def test_linear_audit_sees_squares_difference_attack_is_refused(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    """Var over all rows, then over all rows but one: Σx² and Σx of the left-out row would follow."""
    enc, an = setup(keyhost, admin, dataset)
    enc.lazy().select(pl.col("bmi").ghost.var()).ghost.collect(an)
    with pytest.raises(gp.PermissionDenied, match="linear audit") as e:
        enc.lazy().slice(1).select(pl.col("bmi").ghost.var()).ghost.collect(an)
    assert e.value.reason == "audit_disclosure"
    # the product alone, over all rows but one, is refused too (the product column is audited)
    with pytest.raises(gp.PermissionDenied, match="linear audit"):
        enc.lazy().slice(1).select(pl.col("bmi").ghost.norm()).ghost.collect(an)


def test_min_rows_counts_distinct_rows(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    enc, an = setup(keyhost, admin, dataset)
    with pytest.raises(gp.PermissionDenied, match="at least 20"):
        enc.lazy().head(10).select(pl.col("bmi").ghost.var()).ghost.collect(an)


def test_dp_moments_are_noisy_charged_once_and_deterministic(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    enc, an = setup(keyhost, admin, dataset, [gp.allow.moments(list(GROUP), epsilon=1.0, delta=1e-6, budget=3.0)])
    q = enc.lazy().select(pl.col("bmi").ghost.var().alias("v"), gp.corr("age", "charges").alias("r"))
    a = q.ghost.collect(an)
    b = q.ghost.collect(an)
    assert a.equals(b), "the same request gets the same noise (repeats do not average it away)"
    f = fixed(insurance())
    assert a["v"][0] != f["bmi"].var() and 0.0 <= a["v"][0] < 20 * f["bmi"].var()  # type: ignore[operator]
    # a noisy variance can come out ≤ 0, and then the correlation is null (never outside [-1, 1])
    r = a["r"][0]
    assert r is None or -1.0 <= r <= 1.0
    spent = an.budget(dataset)
    assert spent["answers"] == 1 and spent["epsilon_spent"] <= 1.0 + 1e-9, spent  # charged once per Gram
    # different queries spend more, until the total of 3 would be exceeded
    with pytest.raises(gp.BudgetExhausted):
        for k in range(2, 40):
            enc.lazy().slice(k).select(pl.col("bmi").ghost.var()).ghost.collect(an)
    assert an.budget(dataset)["epsilon_spent"] <= 3.0 + 1e-9


def test_mixed_datasets_and_encryptions_are_refused(admin: gp.Session, dataset: gp.Dataset) -> None:
    df = insurance()
    a = gp.encrypt(df.select("age"), dataset, {"age": SCHEMA["age"]}, products=[("age",)])
    b = gp.encrypt(df.select(pl.col("bmi")), dataset, {"bmi": SCHEMA["bmi"]}, products=[("bmi",)])
    both = pl.concat([a, b], how="horizontal")
    with pytest.raises(gp.UnsupportedOperation, match="different gp.encrypt calls|product of"):
        both.lazy().select(gp.cov("age", "bmi")).ghost.collect(admin)


def test_a_one_row_plaintext_weight_cannot_decrypt_a_row(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    """Per-row weights are public and chosen by the analyst: an indicator of one row would make
    Σ u·x that row's value. min_rows counts the rows with a non-zero weight, and without
    min_rows the linear audit refuses the single-row class."""
    enc, an = setup(keyhost, admin, dataset)
    spy = enc.lazy().with_columns((pl.int_range(pl.len()) == 5).cast(pl.Int8).alias("spy"))
    with pytest.raises(gp.PermissionDenied, match="non-zero on 1 distinct rows"):
        spy.select(pl.col("bmi").ghost.dot("spy")).ghost.collect(an)
    ds2 = admin.create_dataset(f"{dataset.name}_nomin", population=f"{dataset.name}_nomin")
    enc2 = gp.encrypt(insurance(), ds2, SCHEMA, products=[GROUP])
    an2 = gp.connect(keyhost.url, admin.grant(f"nm_{dataset.name}", ds2, [gp.allow.moments(list(GROUP))]))
    spy2 = enc2.lazy().with_columns((pl.int_range(pl.len()) == 5).cast(pl.Int8).alias("spy"))
    with pytest.raises(gp.PermissionDenied, match="linear audit") as e:
        spy2.select(pl.col("bmi").ghost.dot("spy")).ghost.collect(an2)
    assert e.value.reason == "audit_disclosure"
    # weights 1 and 2 on two rows, then the plain sum of both: x_a + 2·x_b and x_a + x_b solve both
    two = enc2.lazy().with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(1).when(pl.int_range(pl.len()) == 8).then(2).otherwise(0).alias("w")
    )
    # (the disclosure rule refuses the weighted entry itself: rows 7 and 8 would be atoms of one)
    with pytest.raises(gp.PermissionDenied, match="linear audit"):
        two.select(pl.col("age").ghost.dot("w")).ghost.collect(an2)
