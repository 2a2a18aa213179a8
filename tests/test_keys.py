"""Pseudonymous keys over ciphertext: ``ghost.key()`` for group_by, joins and n_unique."""

from __future__ import annotations

import json
import random

import polars as pl
import pytest

import ghostpii as gp
from conftest import KeyhostProcess


def _names(n: int, seed: int) -> list[str | None]:
    rng = random.Random(seed)
    pool = ["smith", "jones", "müller", "", "o'neil", "nguyen", "garcía", "li"]
    return [None if rng.random() < 0.05 else rng.choice(pool) for _ in range(n)]


def _analyst(keyhost: KeyhostProcess, admin: gp.Session, allows: dict[gp.Dataset, list[gp.allow.Allow]]) -> gp.Session:
    name = f"k_{random.randrange(10**9)}"
    token = None
    for ds, a in allows.items():
        token = admin.grant(name, ds, a)
    assert token is not None
    return gp.connect(keyhost.url, token)


@pytest.fixture()
def two(admin: gp.Session) -> tuple[gp.Dataset, gp.Dataset, pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    admin.create_join_domain("persons")
    tag = random.randrange(10**9)
    a, b = admin.create_dataset(f"left_{tag}"), admin.create_dataset(f"right_{tag}")
    da = pl.DataFrame({"surname": _names(300, 1), "state": [random.Random(i).choice("ABC") for i in range(300)]})
    db = pl.DataFrame({"surname": _names(200, 2), "amount": list(range(200))})
    schema = {"surname": gp.text(group=True, join_domain="persons")}
    ea = gp.encrypt(da, a, {**schema, "state": gp.text(group=True)})
    eb = gp.encrypt(db, b, schema)
    return a, b, da, db, ea, eb


def test_group_cells_are_pattern_free_at_rest(
    two: tuple[gp.Dataset, gp.Dataset, pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame],
) -> None:
    _, _, da, _, ea, _ = two
    cells = ea["surname"].ext.storage().struct.field("group")
    assert cells.drop_nulls().is_unique().all()
    assert cells.null_count() == da["surname"].null_count()


def test_group_by_n_unique_and_join_equal_plaintext(
    keyhost: KeyhostProcess,
    admin: gp.Session,
    two: tuple[gp.Dataset, gp.Dataset, pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame],
) -> None:
    a, b, da, db, ea, eb = two
    an = _analyst(
        keyhost, admin, {a: [gp.allow.group("surname"), gp.allow.group("state")], b: [gp.allow.group("surname")]}
    )
    # group_by: the same group sizes as the plaintext
    an.reset_stats()
    got = ea.lazy().group_by(pl.col("surname").ghost.key()).agg(pl.len()).ghost.collect(an)
    assert an.stats()["answer_key_requests"] == 1
    want = da.group_by("surname").agg(pl.len())
    assert sorted(got["len"].to_list()) == sorted(want["len"].to_list())
    # n_unique (nulls count as one value, as in Polars)
    n = ea.lazy().select(pl.col("state").ghost.key().n_unique()).ghost.collect(an).item()
    assert n == da["state"].n_unique()
    # a join across two datasets of one join domain: the same pairs as the plaintext join
    left = ea.with_row_index("li").lazy().with_columns(k=pl.col("surname").ghost.key())
    right = eb.with_row_index("ri").lazy().with_columns(k=pl.col("surname").ghost.key())
    an.reset_stats()
    joined = left.join(right, on="k").select("li", "ri").ghost.collect(an)
    assert an.stats()["answer_key_requests"] == 2  # one batched pad request per side
    plain = da.with_row_index("li").join(db.with_row_index("ri"), on="surname").select("li", "ri")
    assert joined.sort("li", "ri").equals(plain.sort("li", "ri"))
    assert joined.height > 0
    # left_on / right_on with the expressions themselves
    j2 = ea.lazy().join(eb.lazy(), left_on=pl.col("surname").ghost.key(), right_on=pl.col("surname").ghost.key())
    assert j2.select(pl.len()).ghost.collect(an).item() == plain.height
    # the pads were audited with their row counts
    pads = admin.audit(a).filter((pl.col("operation") == "pads") & (pl.col("column") == "surname"))
    assert pads.height >= 2
    assert pads["rid_count"].max() == da["surname"].drop_nulls().len()
    assert json.loads(pads["params"][0])["facet"] == "group"


def test_columns_outside_a_shared_join_domain_never_match(
    keyhost: KeyhostProcess,
    admin: gp.Session,
    two: tuple[gp.Dataset, gp.Dataset, pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame],
) -> None:
    a, b, da, db, ea, eb = two
    admin.create_join_domain("places")
    other = gp.encrypt(db, b, {"surname": gp.text(group=True, join_domain="persons")})
    lone = gp.encrypt(da.rename({"surname": "s2"}), a, {"s2": gp.text(group=True)})
    placed = gp.encrypt(da.rename({"surname": "s3"}), a, {"s3": gp.text(group=True, join_domain="places")})
    an = _analyst(keyhost, admin, {a: [gp.allow.group("s2"), gp.allow.group("s3")], b: [gp.allow.group("surname")]})
    for enc, col in ((lone, "s2"), (placed, "s3")):
        left = enc.lazy().select(k=pl.col(col).ghost.key())
        right = other.lazy().select(k=pl.col("surname").ghost.key())
        # lf.ghost.collect refuses the join, whether the keys come from a selection or are the
        # join expressions themselves, and names both domains
        with pytest.raises(gp.UnsupportedOperation, match="would match nothing.*join_domain=") as e:
            left.join(right, on="k").ghost.collect(an)
        assert "persons" in str(e.value)
        direct = enc.lazy().join(other.lazy(), left_on=pl.col(col).ghost.key(), right_on=pl.col("surname").ghost.key())
        with pytest.raises(gp.UnsupportedOperation, match="would match nothing"):
            direct.ghost.collect(an)
        # a plain .collect() is not inspected: the pseudonyms never match (docs/privacy.md)
        assert left.join(right, on="k").collect().height == 0
    # one column without a join domain joins with itself
    keys = lone.lazy().select(k=pl.col("s2").ghost.key())
    self_join = keys.join(keys, on="k")
    plain_self = da.select(k="surname").drop_nulls().join(da.select(k="surname").drop_nulls(), on="k")
    assert self_join.ghost.collect(an).height == plain_self.height > 0


def test_grouping_raw_ciphertext_points_to_key_and_bad_input(
    keyhost: KeyhostProcess,
    admin: gp.Session,
    dataset: gp.Dataset,
    two: tuple[gp.Dataset, gp.Dataset, pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame],
) -> None:
    a, b, da, db, ea, eb = two
    with pytest.raises(gp.UnsupportedOperation, match=r"ghost\.key\(\)"):
        ea.lazy().group_by("surname").agg(pl.len()).ghost.collect(admin)
    with pytest.raises(gp.UnsupportedOperation, match=r"ghost\.key\(\)"):
        ea.lazy().join(ea.lazy(), on="surname").ghost.collect(admin)
    with pytest.raises(gp.UnsupportedOperation, match=r"ghost\.key\(\)"):
        ea.lazy().select(pl.col("surname").n_unique()).ghost.collect(admin)
    plain = gp.encrypt(pl.DataFrame({"x": ["a"]}), dataset, {"x": gp.text(match=True)})
    with pytest.raises(gp.UnsupportedOperation, match="needs the 'group' facet.*group=True"):
        plain.lazy().select(pl.col("x").ghost.key()).ghost.collect(admin)
    an = _analyst(keyhost, admin, {a: [gp.allow.decrypt("surname")]})
    with pytest.raises(gp.PermissionDenied, match="group"):
        ea.lazy().select(pl.col("surname").ghost.key()).ghost.collect(an)
    with pytest.raises(gp.EncryptionError, match="group=True or fuzzy=True"):
        gp.text(match=True, join_domain="persons")
    with pytest.raises(gp.KeyhostError, match="create_join_domain"):
        gp.encrypt(pl.DataFrame({"y": ["a"]}), dataset, {"y": gp.text(group=True, join_domain="nowhere")})
    # all-null column: no request, null keys
    nulls = gp.encrypt(
        pl.DataFrame({"z": pl.Series([None, None], dtype=pl.String)}), dataset, {"z": gp.text(group=True)}
    )
    admin.reset_stats()
    assert nulls.lazy().select(pl.col("z").ghost.key()).collect()["z"].null_count() == 2
    assert admin.stats()["answer_key_requests"] == 0
