"""Issue 18: exact answers stay aggregates, through the public Python API against a real keyhost.

The four attacks (multiplicities that pack rows into one sum, per-row weights that pack rows
into one Gram entry, squares of overlapping pairs, scores across two datasets of one owner) are
refused before any key is issued and recover nothing; ordinary work is answered. The same
attacks over raw HTTP: `src/keyhost/tests/api/disclosure.rs`; the rule against a brute-force
search over small tables: `linear_audit::tests::brute_force_no_cell_is_determined`.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

import ghostpii as gp
from conftest import KeyhostProcess

N = 60
AGES = [(17 * i + 5) % 121 for i in range(N)]


def _enc(ds: gp.Dataset, products: bool = False) -> pl.DataFrame:
    df = pl.DataFrame({"age": AGES, "g": [i % 6 for i in range(N)]})
    return gp.encrypt(df, ds, {"age": gp.integer(bounds=(0, 120))}, products=[("age",)] if products else None)


def _connect(keyhost: KeyhostProcess, admin: gp.Session, ds: gp.Dataset, allows: list[gp.allow.Allow]) -> gp.Session:
    token = admin.grant(f"d18_{ds.name}", ds, allows)
    assert token is not None
    return gp.connect(keyhost.url, token)


def _refusals(admin: gp.Session, ds: gp.Dataset, an: gp.Session, reason: str) -> int:
    log = admin.audit(ds, identity=an.whoami()["identity"])
    return log.filter(pl.col("reason") == reason).height


def test_multiplicities_that_pack_rows_are_refused(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    """Attack 1: 10 rows, two of them repeated 961 and 961·121 times (as a join would): the sum
    would be a base-121 number whose digits are their ages."""
    enc = _enc(dataset)
    an = _connect(keyhost, admin, dataset, [gp.allow.aggregate("age", min_rows=10)])
    idx = [0] * 961 + [1] * (961 * 121) + list(range(2, 10))
    packed = enc[idx]
    with pytest.raises(gp.PermissionDenied, match="linear audit") as e:
        packed.select(pl.col("age").ghost.sum()).ghost.reveal(an)
    assert e.value.reason == "audit_disclosure"
    assert str(AGES[0]) not in str(e.value).split("min_rows")[0]
    assert _refusals(admin, dataset, an, "audit_disclosure") == 1
    # the plain sum of the same 10 rows is answered (the refusal left nothing behind), and a
    # join that repeats every row of the group alike (each twice) too
    assert enc[:10].select(pl.col("age").ghost.sum()).ghost.reveal(an)["age"][0] == sum(AGES[:10])
    doubled = enc[list(range(10)) * 2]
    assert doubled.select(pl.col("age").ghost.sum()).ghost.reveal(an)["age"][0] == 2 * sum(AGES[:10])


def test_per_row_weights_that_pack_rows_are_refused(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    """Attack 2: `dot` with a plaintext feature 121^i on the 10 rows of one group."""
    enc = _enc(dataset, products=True)
    an = _connect(keyhost, admin, dataset, [gp.allow.moments(["age"], min_rows=10)])
    lf = enc.lazy().with_row_index("i").filter(pl.col("i") < 10)
    packed = lf.with_columns(u=pl.lit(121, pl.Int64).pow(pl.col("i").cast(pl.Int64)))
    with pytest.raises(gp.PermissionDenied, match="linear audit") as e:
        packed.group_by(pl.lit(0).alias("one")).agg(pl.col("age").ghost.dot("u")).ghost.collect(an)
    assert e.value.reason == "audit_disclosure"
    # a feature that treats the rows alike in groups of ≥ 10 is answered
    fair = enc.lazy().with_columns(u=pl.when(pl.int_range(pl.len()) < 30).then(2).otherwise(5))
    got = fair.select(pl.col("age").ghost.dot("u")).ghost.collect(an)["age"][0]
    assert got == sum(a * (2 if i < 30 else 5) for i, a in enumerate(AGES))


def test_squares_of_overlapping_pairs_are_refused(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    """Attack 3: var over A, then over A ∪ {r, r+1}, would give the pair's Σx and Σx²."""
    enc = _enc(dataset, products=True)
    an = _connect(keyhost, admin, dataset, [gp.allow.moments(["age"], min_rows=10)])
    a = list(range(20, 30))
    stats = [pl.col("age").ghost.var().alias("v"), pl.col("age").ghost.norm().alias("n")]
    enc[a].lazy().select(stats).ghost.collect(an)
    recovered = 0
    for r in range(0, 8):
        try:
            enc[sorted(a + [r, r + 1])].lazy().select(stats).ghost.collect(an)
            recovered += 1
        except gp.PermissionDenied as e:
            assert e.reason == "audit_disclosure"
    assert recovered == 0
    assert _refusals(admin, dataset, an, "audit_disclosure") == 8


def test_scores_across_two_datasets_of_one_owner(keyhost: KeyhostProcess, admin: gp.Session) -> None:
    """Attack 4: one owner's two datasets hold the same people; scores (1, 1) on one and (2, 1)
    on the other would give every row's two values. Refused unless the owner declared them
    disjoint (a population label of its own on each)."""
    tag = str(np.random.default_rng().integers(1 << 40))
    df = pl.DataFrame({"p": [i % 50 for i in range(40)], "q": [(7 * i) % 30 for i in range(40)]})
    schema = {"p": gp.integer(bounds=(0, 100)), "q": gp.integer(bounds=(0, 100))}
    one, two = admin.create_dataset(f"sc1_{tag}"), admin.create_dataset(f"sc2_{tag}")
    e1, e2 = gp.encrypt(df, one, schema), gp.encrypt(df, two, schema)
    t1 = admin.grant(f"sc_{tag}", one, [gp.allow.score(["p", "q"], max_vectors=1)])
    admin.grant(f"sc_{tag}", two, [gp.allow.score(["p", "q"], max_vectors=1)], issue_token=False)
    assert t1 is not None
    an = gp.connect(keyhost.url, t1)
    for enc, w in ((e1, {"p": 1.0, "q": 1.0}), (e2, {"p": 2.0, "q": 1.0})):
        with pytest.raises(gp.PermissionDenied, match="population") as e:
            gp.score(enc, w, session=an)
        assert e.value.reason == "population_overlap"
    # declared different people: each answered (and the span rule holds per dataset)
    three = admin.create_dataset(f"sc3_{tag}", population=f"clinic-a-{tag}")
    four = admin.create_dataset(f"sc4_{tag}", population=f"clinic-b-{tag}")
    df2 = df.rename({"p": "p2", "q": "q2"})
    schema2 = {"p2": schema["p"], "q2": schema["q"]}
    e3, e4 = gp.encrypt(df2, three, schema2), gp.encrypt(df2, four, schema2)
    for ds in (three, four):
        admin.grant(f"sc_{tag}", ds, [gp.allow.score(["p2", "q2"], max_vectors=1)], issue_token=False)
    s3 = gp.score(e3, {"p2": 1.0, "q2": 1.0}, session=an)
    assert s3.to_list() == pytest.approx((df["p"] + df["q"]).to_list())
    gp.score(e4, {"p2": 2.0, "q2": 1.0}, session=an)
    # the label is fixed at creation
    with pytest.raises(gp.KeyhostError):
        admin.create_dataset(f"sc3_{tag}", population="another")


def test_legitimate_work_is_answered(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    """Disjoint group sums plus the total, group_by after a filter, var/cov/corr and a regression
    fit over groups of ≥ min_rows rows, repeated queries."""
    rng = np.random.default_rng(5)
    n = 400
    df = pl.DataFrame(
        {
            "x": rng.integers(0, 100, n),
            "y": rng.integers(0, 100, n),
            "g": rng.permutation(np.arange(n) % 8),
        }
    ).with_columns(z=(3 * pl.col("x") + pl.col("y") // 2) % 500)
    schema = {c: gp.integer(bounds=(0, 500)) for c in ("x", "y", "z")}
    enc = gp.encrypt(df, dataset, schema, products=[("x", "y", "z")])
    an = _connect(
        keyhost,
        admin,
        dataset,
        [gp.allow.moments(["x", "y", "z"], min_rows=20), *(gp.allow.aggregate(c, min_rows=20) for c in ("x", "y"))],
    )
    for _ in range(2):  # repeated
        got = enc.lazy().group_by("g").agg(pl.col("x").ghost.sum()).ghost.collect(an).sort("g")
        want = df.group_by("g").agg(pl.col("x").sum()).sort("g")
        assert got["x"].to_list() == want["x"].to_list()
        assert enc.lazy().select(pl.col("x").ghost.sum()).ghost.collect(an)["x"][0] == df["x"].sum()
    # group_by after a filter: every group keeps ≥ 20 rows, and so does what the filter drops
    f = enc.lazy().with_row_index("i").filter(pl.col("i") < 200)
    got = f.group_by("g").agg(pl.col("y").ghost.mean()).ghost.collect(an).sort("g")
    want = df.with_row_index("i").filter(pl.col("i") < 200).group_by("g").agg(pl.col("y").mean()).sort("g")
    assert got["y"].to_list() == pytest.approx(want["y"].to_list())
    # var / cov / corr per group
    stats = (
        enc.lazy()
        .group_by("g")
        .agg(pl.col("x").ghost.var().alias("v"), gp.cov("x", "y").alias("c"), gp.corr("x", "z").alias("r"))
        .ghost.collect(an)
        .sort("g")
    )
    plain = (
        df.group_by("g")
        .agg(pl.col("x").var().alias("v"), pl.cov("x", "y").alias("c"), pl.corr("x", "z").alias("r"))
        .sort("g")
    )
    for col in ("v", "c", "r"):
        assert all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) for a, b in zip(stats[col], plain[col], strict=True))
    # a regression fit over all rows
    m = gp.ml.LinearRegression().fit(enc.lazy(), features=["x", "y"], target="z", session=an)
    assert all(math.isfinite(c) for c in m.coef_)
    assert _refusals(admin, dataset, an, "audit_disclosure") == 0


def test_grouped_dp_moments_compose_in_parallel(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset
) -> None:
    """Grouped DP moments over 19 singleton groups cost ε once (parallel composition), not 19ε."""
    df = pl.DataFrame({"age": AGES[:19], "g": list(range(19))})
    enc = gp.encrypt(df, dataset, {"age": gp.integer(bounds=(0, 120))}, products=[("age",)])
    an = _connect(keyhost, admin, dataset, [gp.allow.moments(["age"], epsilon=0.5, budget=5.0)])
    got = enc.lazy().group_by("g").agg(pl.col("age").ghost.norm().alias("n")).ghost.collect(an)
    assert got.height == 19
    assert an.budget(dataset)["epsilon_spent"] == pytest.approx(0.5)
