"""gp.score: per-row x·w over encrypted rows, and the keyhost's span rule against decryption."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

import ghostpii as gp


def _frame(n: int = 200, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "bmi": np.round(rng.uniform(15, 45, n), 2),
            "charges": np.round(rng.uniform(1000, 60000, n), 2),
            "kids": rng.integers(0, 5, n),
            "region": rng.integers(0, 4, n).astype(float),
        }
    ).with_columns(pl.when(pl.int_range(n) % 17 == 3).then(None).otherwise(pl.col("bmi")).alias("bmi"))


SCHEMA = {
    "age": gp.integer(bounds=(0, 120)),
    "bmi": gp.number(decimals=2, bounds=(0, 100)),
    "charges": gp.number(decimals=2, bounds=(0, 100_000)),
    "kids": gp.integer(bounds=(0, 10)),
}


@pytest.fixture()
def setup(admin: gp.Session, dataset: gp.Dataset) -> tuple[pl.DataFrame, pl.DataFrame, gp.Session]:
    df = _frame()
    enc = gp.encrypt(df, dataset, SCHEMA)
    token = admin.grant("scorer", dataset, [gp.allow.score(["age", "bmi", "charges", "kids"])])
    an = gp.connect(admin.url, token)
    return df, enc, an


def _expected(df: pl.DataFrame, w: dict[str, float], b: float = 0.0) -> pl.Series:
    expr = pl.lit(b)
    for c, v in w.items():
        expr = expr + pl.col(c) * v  # a null input gives a null score
    return df.select(expr.alias("s")).to_series()


def test_scores_equal_plaintext_x_dot_w_with_nulls_in_one_request(
    setup: tuple[pl.DataFrame, pl.DataFrame, gp.Session],
) -> None:
    df, enc, an = setup
    w = {"age": 0.25, "bmi": -1.5, "charges": 0.001, "kids": 3.0}
    an.reset_stats()
    got = gp.score(enc.lazy(), w, intercept=10.0, session=an)
    assert an.stats()["round_trips"] == 1 and an.stats()["descriptors"] == 1
    want = _expected(df, w, 10.0)
    assert got.name == "score" and got.dtype == pl.Float64 and got.len() == df.height
    assert got.is_null().to_list() == df["bmi"].is_null().to_list() == want.is_null().to_list()
    np.testing.assert_allclose(got.drop_nulls().to_numpy(), want.drop_nulls().to_numpy(), rtol=1e-12, atol=1e-9)


def test_plaintext_columns_mix_in_and_a_filtered_frame_scores_its_rows(
    setup: tuple[pl.DataFrame, pl.DataFrame, gp.Session],
) -> None:
    df, enc, an = setup
    full = enc.with_columns(df["region"])
    w = {"age": 2.0, "charges": -0.5, "region": 7.0}
    got = gp.score(full.lazy().filter(pl.col("region") > 1), w, session=an)
    want = _expected(df.filter(pl.col("region") > 1), w)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12)


def test_repeating_the_same_vector_is_answered_and_audited_with_weights_and_rows(
    admin: gp.Session, dataset: gp.Dataset, setup: tuple[pl.DataFrame, pl.DataFrame, gp.Session]
) -> None:
    df, enc, an = setup
    w = {"age": 1.0, "bmi": 2.0}
    first = gp.score(enc, w, session=an)
    for _ in range(3):
        assert gp.score(enc, w, session=an).equals(first)
    # multiples and combinations of answered vectors reveal nothing new: answered too
    gp.score(enc, {"age": 2.0, "bmi": 4.0}, session=an)
    audit = admin.audit(dataset).filter(pl.col("operation") == "score")
    assert audit.height == 5 and set(audit["decision"]) == {"issued"}
    params = json.loads(audit["params"][0])
    assert [t["weight"] for t in params["terms"]] and params["scale_bits"] > 0
    assert audit["rid_count"][0] == df["bmi"].is_not_null().sum()


def _raw_score(enc: pl.DataFrame, an: gp.Session, weights: dict[str, int]) -> list[dict[str, object]]:
    """The attacker's own descriptor: integer weights of its choosing, all rows."""
    import base64

    from ghostpii import _internal

    metas = {c: enc.schema[c].meta() for c in weights}  # type: ignore[attr-defined]
    rows = _internal.ScoreRows([enc[c] for c in weights], list(weights.values()))
    first = next(iter(metas.values()))
    d = {
        "op": "score",
        "dataset_id": first["dataset_id"],
        "rids": base64.b64encode(rows.rid_set()).decode(),
        "terms": [{"column_id": m["column_id"], "epoch": m["epoch"], "weight": weights[c]} for c, m in metas.items()],
    }
    return an.answer_keys([d])


def test_w_and_w_plus_a_unit_vector_are_refused_naming_the_column(
    admin: gp.Session, dataset: gp.Dataset, setup: tuple[pl.DataFrame, pl.DataFrame, gp.Session]
) -> None:
    _, enc, an = setup
    gp.score(enc, {"age": 1.0, "bmi": 1.0, "kids": 1.0}, session=an)
    entry = admin.audit(dataset).filter(pl.col("operation") == "score")
    w = [t["weight"] for t in json.loads(entry["params"][0])["terms"]]
    # the same integer vector again (what gp.score sent) is answered
    _raw_score(enc, an, {"age": w[0], "bmi": w[1], "kids": w[2]})
    # w + e_age would give age = s2 − s1 row by row
    with pytest.raises(gp.PermissionDenied, match="unit vector of column 'age'") as e:
        _raw_score(enc, an, {"age": w[0] + 1, "bmi": w[1], "kids": w[2]})
    assert e.value.reason == "score_span"
    with pytest.raises(gp.PermissionDenied, match="unit vector of column 'kids'"):
        _raw_score(enc, an, {"age": -w[0], "bmi": -w[1], "kids": -w[2] - 7})


def test_a_single_column_is_never_scored(setup: tuple[pl.DataFrame, pl.DataFrame, gp.Session]) -> None:
    _, enc, an = setup
    with pytest.raises(gp.PermissionDenied, match="column 'charges'") as e:
        gp.score(enc, {"charges": 3.5}, session=an)
    assert e.value.reason == "score_span"


def test_d_independent_vectors_are_refused_before_they_decrypt(
    setup: tuple[pl.DataFrame, pl.DataFrame, gp.Session],
) -> None:
    df, enc, an = setup
    cols = ["age", "bmi", "charges", "kids"]
    rng = np.random.default_rng(5)
    answered: list[np.ndarray] = []
    refused = 0
    for _ in range(len(cols)):
        w = rng.normal(size=len(cols))
        try:
            gp.score(enc, dict(zip(cols, w.tolist(), strict=True)), session=an)
            answered.append(w)
        except gp.PermissionDenied as e:
            assert e.reason == "score_span"
            refused += 1
    assert refused == 1 and len(answered) == len(cols) - 1
    # with d - 1 vectors the analyst cannot solve for any column
    m = np.array(answered)
    for j in range(len(cols)):
        e = np.eye(len(cols))[j]
        assert np.linalg.matrix_rank(np.vstack([m, e])) > np.linalg.matrix_rank(m)


def test_vectors_over_other_column_subsets_are_combined(setup: tuple[pl.DataFrame, pl.DataFrame, gp.Session]) -> None:
    _, enc, an = setup
    gp.score(enc, {"age": 1.0, "bmi": 1.0}, session=an)
    gp.score(enc, {"bmi": 1.0, "kids": 1.0}, session=an)
    with pytest.raises(gp.PermissionDenied, match="unit vector") as e:
        gp.score(enc, {"age": 1.0, "kids": 1.0}, session=an)  # a − b + c = 2·age
    assert e.value.reason == "score_span"


def test_max_vectors_caps_independent_vectors(admin: gp.Session, dataset: gp.Dataset) -> None:
    enc = gp.encrypt(_frame(50), dataset, SCHEMA)
    token = admin.grant("capped", dataset, [gp.allow.score(["age", "bmi", "charges", "kids"], max_vectors=1)])
    an = gp.connect(admin.url, token)
    gp.score(enc, {"age": 1.0, "bmi": 1.0}, session=an)
    gp.score(enc, {"age": 1.0, "bmi": 1.0}, session=an)
    with pytest.raises(gp.PermissionDenied, match="at most 1") as e:
        gp.score(enc, {"charges": 1.0, "kids": 1.0}, session=an)
    assert e.value.reason == "max_vectors"


def test_scoring_needs_the_score_grant_on_every_column(admin: gp.Session, dataset: gp.Dataset) -> None:
    enc = gp.encrypt(_frame(30), dataset, SCHEMA)
    token = admin.grant("partial", dataset, [gp.allow.score(["age"]), gp.allow.aggregate("bmi")])
    an = gp.connect(admin.url, token)
    with pytest.raises(gp.PermissionDenied, match="no 'score' grant on column 'bmi'"):
        gp.score(enc, {"age": 1.0, "bmi": 1.0}, session=an)


def test_bad_input_is_typed(setup: tuple[pl.DataFrame, pl.DataFrame, gp.Session], dataset: gp.Dataset) -> None:
    df, enc, an = setup
    with pytest.raises(ValueError, match="at least one"):
        gp.score(enc, {}, session=an)
    with pytest.raises(TypeError, match="finite number"):
        gp.score(enc, {"age": float("nan")}, session=an)
    with pytest.raises(ValueError, match="non-zero"):
        gp.score(enc, {"age": 0.0, "bmi": 0.0}, session=an)
    with pytest.raises(gp.UnsupportedOperation, match="different gp.encrypt calls"):
        other = gp.encrypt(df.select("kids").rename({"kids": "kids2"}), dataset, {"kids2": gp.integer(bounds=(0, 10))})
        gp.score(enc.with_columns(other["kids2"]), {"age": 1.0, "kids2": 1.0}, session=an)
    with pytest.raises(gp.UnsupportedOperation, match="plaintext column 'name'"):
        gp.score(enc.with_columns(pl.lit("x").alias("name")), {"age": 1.0, "name": 1.0}, session=an)
    with pytest.raises(gp.UnsupportedOperation, match="too large"):
        gp.score(enc, {"age": 1e300, "bmi": 1.0}, session=an)


def test_all_null_rows_give_nulls_without_a_request(setup: tuple[pl.DataFrame, pl.DataFrame, gp.Session]) -> None:
    df, enc, an = setup
    nulls = enc.filter(pl.Series(df["bmi"].is_null()))
    an.reset_stats()
    got = gp.score(nulls, {"age": 1.0, "bmi": 1.0}, session=an)
    assert got.null_count() == got.len() > 0 and an.stats()["round_trips"] == 0


def test_digit_separation_over_small_declared_ranges_is_refused(
    setup: tuple[pl.DataFrame, pl.DataFrame, gp.Session],
) -> None:
    """Issue 18: one vector whose weights differ by more than the other columns' declared ranges
    would separate the columns like digits (``1000·age + kids`` gives both); the keyhost refuses
    it (``score_span``), and a float vector with the same effect too. Generic injective vectors
    remain (docs/threat-model.md, "Scores")."""
    df, enc, an = setup
    with pytest.raises(gp.PermissionDenied, match="like a digit") as e:
        _raw_score(enc, an, {"age": 1000, "kids": 1})
    assert e.value.reason == "score_span"
    with pytest.raises(gp.PermissionDenied, match="'age' like a digit"):
        gp.score(enc, {"age": 0.001, "kids": 1.0}, session=an)
    # comparable weights are answered
    got = gp.score(enc, {"age": 1.0, "kids": 2.0}, session=an)
    assert got.to_list() == pytest.approx((df["age"] + 2 * df["kids"]).cast(pl.Float64).to_list())


def test_a_lazy_frame_filtered_on_ciphertext_costs_two_round_trips(admin: gp.Session, dataset: gp.Dataset) -> None:
    df = _frame(80)
    schema = {**SCHEMA, "age": gp.integer(bounds=(0, 120), compare=True)}
    enc = gp.encrypt(df, dataset, schema)
    token = admin.grant("lazy", dataset, [gp.allow.score(["age", "bmi"]), gp.allow.compare("age")])
    an = gp.connect(admin.url, token)
    an.reset_stats()
    got = gp.score(enc.lazy().filter(pl.col("age").ghost.gt(40)), {"age": 1.0, "bmi": 0.5}, session=an)
    assert an.stats()["round_trips"] == 2
    want = _expected(df.filter(pl.col("age") > 40), {"age": 1.0, "bmi": 0.5})
    np.testing.assert_allclose(got.drop_nulls().to_numpy(), want.drop_nulls().to_numpy(), rtol=1e-12)
    assert got.is_null().to_list() == want.is_null().to_list()
