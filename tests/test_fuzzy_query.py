"""``pl.col(c).ghost.similarity(constant)`` over the ``fuzzy`` facet (issue 19): per-row
similarity to a query string with a keyhost-issued token under ``gp.allow.link(c,
max_constants=n)``, against the plaintext bigram Dice on the same normalisation; refusals;
and ``gp.text(fuzzy_space=...)`` (names swapped between two columns still link)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import ghostpii as gp
from conftest import KeyhostProcess
from ghostpii import linkage
from ghostpii.keyed import normalise

DATA = Path(__file__).parent / "data" / "large_names_5k.csv"


def _bigrams(s: str) -> set[str]:
    t = "\x02" + s + "\x02"
    return {t[i : i + 2] for i in range(len(t) - 1)}


def _dice(a: str, b: str) -> float:
    x, y = _bigrams(a), _bigrams(b)
    return 2 * len(x & y) / (len(x) + len(y))


@pytest.fixture(scope="module")
def names(keyhost: KeyhostProcess) -> tuple[pl.DataFrame, pl.DataFrame, gp.Session, gp.Dataset, str]:
    df = pl.read_csv(DATA).rename(lambda c: c.strip()).head(400)
    df = df.with_columns(pl.when(pl.int_range(pl.len()) % 50 == 7).then(None).otherwise(pl.col("last")).alias("last"))
    admin = keyhost.admin()
    tag = random.randrange(10**9)
    ds = admin.create_dataset(f"fq{tag}")
    enc = gp.encrypt(df, ds, {"last": gp.text(fuzzy=True), "first": gp.text(match=True)})
    return df, enc, admin, ds, f"fq{tag}"


def _analyst(keyhost: KeyhostProcess, admin: gp.Session, ds: gp.Dataset, allow: list[gp.allow.Allow]) -> gp.Session:
    token = admin.grant(f"fqa{random.randrange(10**9)}", ds, allow)
    assert token is not None
    return gp.connect(keyhost.url, token)


def test_similarity_to_a_constant_approximates_plaintext_bigram_dice(
    keyhost: KeyhostProcess, names: tuple[pl.DataFrame, pl.DataFrame, gp.Session, gp.Dataset, str]
) -> None:
    df, enc, admin, ds, _ = names
    an = _analyst(keyhost, admin, ds, [gp.allow.link("last", max_constants=3)])
    common = df["last"].drop_nulls().mode()[0]
    query = f"  {common.upper()} "  # normalised as the column was: NFKC, lower case, trimmed
    an.reset_stats()
    got = enc.lazy().select(pl.col("last").ghost.similarity(query)).ghost.collect(an)["last"]
    assert an.stats()["answer_key_requests"] <= 2  # the token, then the seeds of the rows
    plain = normalise(df["last"])
    assert got.is_null().to_list() == plain.is_null().to_list()
    c = normalise(pl.Series([query]))[0]
    want = np.array([np.nan if v is None else _dice(v, c) for v in plain])
    g = got.to_numpy()
    ok = ~np.isnan(want)
    # the Bloom filters add collisions and the rows' salt bits (unrelated names score about 0.08
    # instead of 0): close to, not equal to, plaintext, and in the same order
    err = np.abs(g[ok] - want[ok])
    assert err.mean() < 0.1 and err.max() < 0.3, (err.mean(), err.max())
    assert np.corrcoef(g[ok], want[ok])[0, 1] > 0.95
    equal = ok & (want == 1.0)
    assert equal.sum() >= 2 and g[equal].min() > 0.85 and g[equal].max() <= 1.0
    assert g[ok & (want < 0.5)].max() < g[equal].min()  # unlike names never rank with equal ones
    # Jaccard from the same token, below Dice wherever they differ
    jac = enc.lazy().select(pl.col("last").ghost.similarity(query, metric="jaccard")).ghost.collect(an)["last"]
    assert np.all(jac.to_numpy()[ok] <= g[ok] + 1e-12) and np.any(jac.to_numpy()[ok] < g[ok])
    # a plain .collect() fetches the token and seeds itself: the same answer
    gp.tokens.activate(an)
    again = enc.lazy().select(pl.col("last").ghost.similarity(query)).collect()["last"]
    assert np.allclose(again.to_numpy()[ok], g[ok])


def test_similarity_tokens_are_limited_to_their_constants_and_columns(
    keyhost: KeyhostProcess, names: tuple[pl.DataFrame, pl.DataFrame, gp.Session, gp.Dataset, str]
) -> None:
    _, enc, admin, ds, _ = names
    lf = enc.lazy()
    # a link grant without max_constants links, but issues no similarity token
    an = _analyst(keyhost, admin, ds, [gp.allow.link("last")])
    with pytest.raises(gp.PermissionDenied) as e:
        lf.select(pl.col("last").ghost.similarity("smith")).ghost.collect(an)
    assert e.value.reason == "constant_not_allowed", e.value.reason
    # two distinct constants, then refused (re-asking an issued one is allowed)
    an = _analyst(keyhost, admin, ds, [gp.allow.link("last", max_constants=2)])
    for q in ("smith", "jones", "smith"):
        assert lf.select(pl.col("last").ghost.similarity(q)).ghost.collect(an).height == enc.height
    with pytest.raises(gp.PermissionDenied) as e:
        lf.select(pl.col("last").ghost.similarity("brown")).ghost.collect(an)
    assert e.value.reason == "max_constants", e.value.reason
    # no link grant on the column: no token
    an = _analyst(keyhost, admin, ds, [gp.allow.match("first")])
    with pytest.raises(gp.PermissionDenied):
        lf.select(pl.col("last").ghost.similarity("smith")).ghost.collect(an)
    # a column without the fuzzy facet, a bad metric, an empty constant: typed, before any request
    with pytest.raises(gp.UnsupportedOperation, match="fuzzy"):
        lf.select(pl.col("first").ghost.similarity("anna")).ghost.collect(admin)
    with pytest.raises(linkage.LinkError):
        pl.col("last").ghost.similarity("smith", metric="cosine")
    with pytest.raises(linkage.LinkError):
        pl.col("last").ghost.similarity("   ")
    with pytest.raises(ValueError):
        gp.allow.link("last", max_constants=0)
    # similarity tokens travel as search descriptors of kind "similarity"; refusals are audited
    audit = admin.audit(ds).filter(pl.col("operation") == "search")
    kinds = [str(p) for p in audit.filter(pl.col("decision") == "refused")["params"].to_list()]
    assert sum("similarity" in k for k in kinds) >= 2, kinds
    assert not any("smith" in str(p) for p in audit["params"].to_list())  # constants by digest only


def test_fuzzy_space_links_swapped_names_and_must_match_on_both_sides(keyhost: KeyhostProcess) -> None:
    """Given name and surname in one bigram space: a record whose names were swapped is the same
    set of bigrams, so it links to its original; each column in its own space, it does not.
    Sides in different spaces are refused."""
    admin = keyhost.admin()
    tag = random.randrange(10**9)
    admin.create_join_domain(f"sw{tag}")
    df = pl.read_csv(DATA).rename(lambda c: c.strip()).head(200).unique(["first", "last"], maintain_order=True)
    swapped = df.with_columns(pl.col("last").alias("first"), pl.col("first").alias("last"))
    on = ["first", "last"]

    def encrypted(space: str | None, k: int) -> tuple[pl.DataFrame, pl.DataFrame]:
        spec = gp.text(fuzzy=True, join_domain=f"sw{tag}", fuzzy_space=space)
        da, db = admin.create_dataset(f"swa{tag}_{k}"), admin.create_dataset(f"swb{tag}_{k}")
        return gp.encrypt(df, da, {c: spec for c in on}), gp.encrypt(swapped, db, {c: spec for c in on})

    def correct(links: pl.DataFrame) -> int:
        return int((links["left_index"] == links["right_index"]).sum())

    ea, eb = encrypted("name", 1)
    links = gp.link(ea, eb, on=on, session=admin)
    assert correct(links) >= 0.95 * df.height and correct(links) == links.height
    oa, ob = encrypted(None, 2)
    assert correct(gp.link(oa, ob, on=on, session=admin)) < 0.1 * df.height
    # a side in another space is refused, typed
    with pytest.raises(gp.UnsupportedOperation, match="fuzzy_space"):
        gp.link(ea, ob, on=on, session=admin)
    with pytest.raises(gp.EncryptionError, match="fuzzy=True"):
        gp.text(fuzzy_space="name")
    # ghost.similarity refuses a column in a shared space (the keyhost does not record the space)
    with pytest.raises(gp.UnsupportedOperation, match="fuzzy_space"):
        ea.lazy().select(pl.col("first").ghost.similarity("anna")).ghost.collect(admin)
