"""Equality over ciphertext: ``ghost.eq`` / ``ghost.is_in`` with keyhost-issued match tokens."""

from __future__ import annotations

import datetime as dt
import json
import random

import polars as pl
import pytest

import ghostpii as gp
from conftest import KeyhostProcess

NAMES = ["green", "brown", "green", None, "", "Grün", "grün", "gru\u0308n", "O'Neil", "green "]


def _frame(n: int = 400) -> pl.DataFrame:
    rng = random.Random(3)
    names = [rng.choice(NAMES) for _ in range(n)] + NAMES
    return pl.DataFrame(
        {
            "name": names,
            "zip": [rng.choice([1000, 2000, 3000, None]) for _ in range(len(names))],
            "dob": [rng.choice([dt.date(1990, 1, 1), dt.date(2000, 2, 29), None]) for _ in range(len(names))],
        }
    )


@pytest.fixture()
def people(dataset: gp.Dataset) -> tuple[pl.DataFrame, pl.DataFrame]:
    df = _frame()
    enc = gp.encrypt(
        df,
        dataset,
        {"name": gp.text(match=True), "zip": gp.integer(match=True), "dob": gp.date(match=True)},
    )
    return df, enc


def _analyst(keyhost: KeyhostProcess, admin: gp.Session, ds: gp.Dataset, allows: list[gp.allow.Allow]) -> gp.Session:
    token = admin.grant(f"m_{ds.name}_{random.randrange(10**9)}", ds, allows)
    assert token is not None
    return gp.connect(keyhost.url, token)


def test_equal_values_have_different_match_tags(people: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    df, enc = people
    tags = enc["name"].ext.storage().struct.field("match")
    greens = tags.filter(df["name"] == "green")
    assert greens.len() > 10
    assert greens.n_unique() == greens.len()  # no equality pattern at rest
    assert tags.null_count() == df["name"].null_count()
    assert enc["zip"].ext.storage().struct.field("match").drop_nulls().is_unique().all()


def test_eq_and_is_in_equal_plaintext_row_for_row(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset, people: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    df, enc = people
    an = _analyst(keyhost, admin, dataset, [gp.allow.match("name"), gp.allow.match("zip"), gp.allow.match("dob")])
    cases = [
        (pl.col("name").ghost.eq("green"), pl.col("name") == "green"),
        (pl.col("name").ghost.eq(""), pl.col("name") == ""),
        (pl.col("name").ghost.eq("grün"), pl.col("name") == "grün"),  # composed ü only: exact UTF-8
        (pl.col("name").ghost.eq("nobody"), pl.col("name") == "nobody"),
        (pl.col("name").ghost.is_in(["green", "O'Neil"]), pl.col("name").is_in(["green", "O'Neil"])),
        (pl.col("zip").ghost.eq(2000), pl.col("zip") == 2000),
        (pl.col("zip").ghost.is_in([1000, 3000, 9999]), pl.col("zip").is_in([1000, 3000, 9999])),
        (pl.col("dob").ghost.eq(dt.date(2000, 2, 29)), pl.col("dob") == dt.date(2000, 2, 29)),
    ]
    for ghost, plain in cases:
        got = enc.lazy().select(ghost.alias("x")).ghost.collect(an)["x"]
        want = df.select(plain.alias("x"))["x"]
        assert got.to_list() == want.to_list(), ghost
        n = enc.lazy().filter(ghost).ghost.collect(an).height
        assert n == df.filter(plain).height
    # nulls are never equal to anything: the row stays null, a filter drops it
    assert enc.lazy().select(pl.col("name").ghost.eq("green")).ghost.collect(an)["name"].null_count() > 0
    empty = enc.lazy().select(pl.col("name").ghost.is_in([]).alias("x")).ghost.collect(an)["x"]
    assert empty.drop_nulls().sum() == 0


def test_all_tokens_in_one_request_and_plain_collect_fetches_once(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset, people: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    df, enc = people
    an = _analyst(keyhost, admin, dataset, [gp.allow.match("name"), gp.allow.match("zip")])
    q = (
        enc.lazy()
        .filter(pl.col("name").ghost.is_in(["green", "brown", ""]) | pl.col("zip").ghost.eq(1000))
        .select(pl.len())
    )
    an.reset_stats()
    got = q.ghost.collect(an).item()
    assert an.stats()["answer_key_requests"] == 1
    assert an.stats()["descriptors"] == 4
    assert got == df.filter(pl.col("name").is_in(["green", "brown", ""]) | (pl.col("zip") == 1000)).height
    # plain .collect() on a new constant: one request for it, none for the cached ones
    an.reset_stats()
    q2 = enc.lazy().filter(pl.col("name").ghost.eq("O'Neil") | pl.col("name").ghost.eq("green"))
    assert q2.collect().height == df.filter(pl.col("name").is_in(["O'Neil", "green"])).height
    assert an.stats()["answer_key_requests"] == 1
    assert an.stats()["descriptors"] == 1


def test_match_grants_constants_max_constants_and_audit(
    keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset, people: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    df, enc = people
    nogrant = _analyst(keyhost, admin, dataset, [gp.allow.decrypt("zip")])
    with pytest.raises(gp.PermissionDenied, match="match"):
        enc.lazy().filter(pl.col("name").ghost.eq("green")).ghost.collect(nogrant)
    an = _analyst(
        keyhost,
        admin,
        dataset,
        [gp.allow.match("name", constants=["green", "brown", ""], max_constants=2), gp.allow.match("zip")],
    )
    with pytest.raises(gp.PermissionDenied, match="may not match"):
        enc.lazy().filter(pl.col("name").ghost.eq("O'Neil")).ghost.collect(an)
    assert enc.lazy().filter(pl.col("name").ghost.eq("green")).ghost.collect(an).height > 0
    enc.lazy().filter(pl.col("name").ghost.eq("brown")).ghost.collect(an)
    gp.tokens.clear()  # forget cached tokens: ask again
    enc.lazy().filter(pl.col("name").ghost.eq("green")).ghost.collect(an)  # re-issuing is allowed
    with pytest.raises(gp.PermissionDenied, match="at most 2"):
        enc.lazy().filter(pl.col("name").ghost.eq("")).ghost.collect(an)
    audit = admin.audit(dataset).filter(pl.col("operation") == "match")
    issued = audit.filter(pl.col("decision") == "issued")
    assert issued.height == 3
    params = [json.loads(p) for p in issued["params"]]
    assert all(len(p["constant_digest"]) == 32 for p in params)
    assert all("green" not in json.dumps(p) for p in params)  # text constants appear only as digests
    assert audit.filter(pl.col("decision") == "refused").height == 3  # no grant, O'Neil, max_constants
    enc.lazy().filter(pl.col("zip").ghost.eq(3000)).ghost.collect(an)
    zips = admin.audit(dataset).filter((pl.col("operation") == "match") & (pl.col("column") == "zip"))
    assert json.loads(zips["params"][0])["constant"] == 3000


def test_bad_input_is_refused_with_typed_errors(
    admin: gp.Session, dataset: gp.Dataset, people: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    df, enc = people
    plain = gp.encrypt(pl.DataFrame({"t": ["a"], "n": [1]}), dataset, {"t": gp.text(), "n": gp.integer()})
    for col in ("t", "n"):
        with pytest.raises(gp.UnsupportedOperation, match="needs the 'match' facet.*match=True"):
            plain.lazy().filter(pl.col(col).ghost.eq("a" if col == "t" else 1)).ghost.collect(admin)
    with pytest.raises(gp.UnsupportedOperation, match="cannot compare"):
        enc.lazy().filter(pl.col("zip").ghost.eq("1000")).ghost.collect(admin)
    with pytest.raises(gp.UnsupportedOperation, match="cannot compare"):
        enc.lazy().filter(pl.col("name").ghost.eq(5)).ghost.collect(admin)
    with pytest.raises(TypeError, match="is_null"):
        pl.col("name").ghost.eq(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bool"):
        pl.col("zip").ghost.eq(True)
    with pytest.raises(TypeError, match="list"):
        pl.col("name").ghost.is_in("green")
    with pytest.raises(TypeError):
        gp.number(match=True)  # type: ignore[call-arg]


def test_a_match_grant_covers_only_its_column(keyhost: KeyhostProcess, admin: gp.Session, dataset: gp.Dataset) -> None:
    df = pl.DataFrame({"a": ["x", "y"], "b": ["x", "y"]})
    enc = gp.encrypt(df, dataset, {"a": gp.text(match=True), "b": gp.text(match=True)})
    an = _analyst(keyhost, admin, dataset, [gp.allow.match("a")])
    assert enc.lazy().filter(pl.col("a").ghost.eq("x")).ghost.collect(an).height == 1
    with pytest.raises(gp.PermissionDenied, match="match"):
        enc.lazy().filter(pl.col("b").ghost.eq("x")).ghost.collect(an)
