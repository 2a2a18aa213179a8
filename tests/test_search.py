"""Prefix, suffix and substring search over ciphertext (the ``search`` facet, issue 19):
``ghost.starts_with`` / ``ghost.ends_with`` / ``ghost.contains`` with keyhost-issued search
tokens, checked row for row against Polars' ``str.starts_with`` / ``str.ends_with`` /
``str.contains`` on 5,000 real names (tests/data/large_names_5k.csv: Capnion's ghostpii_demos,
MIT, see tests/data/LICENSE.capnion-demos)."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import polars as pl
import pytest

import ghostpii as gp
from conftest import KeyhostProcess
from ghostpii import _internal
from ghostpii.tokens import clear as clear_tokens

DATA = Path(__file__).parent / "data" / "large_names_5k.csv"
SEARCH = gp.text(prefix=(1, 2, 3), suffix=(1, 2, 3), substring=3)


def _names() -> pl.DataFrame:
    df = pl.read_csv(DATA).rename(lambda c: c.strip())
    # a few nulls, empty and non-ASCII values among the real names
    extra = pl.DataFrame({"first": [None, "", "Ännä", "Zoë"], "last": ["Müller", None, "", "O'Neil"]})
    return pl.concat([df, extra])


@pytest.fixture(scope="module")
def names(tmp_path_factory: pytest.TempPathFactory, keyhost: KeyhostProcess) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    admin = gp.connect(keyhost.url, keyhost.admin_token)
    ds = admin.create_dataset(f"names_{random.randrange(10**9)}")
    df = _names()
    enc = gp.encrypt(df, ds, {"first": SEARCH, "last": gp.text(prefix=(1, 2), substring=3, match=True)})
    return df, enc, ds.name


def _analyst(keyhost: KeyhostProcess, allows: list[gp.allow.Allow], ds: str) -> gp.Session:
    admin = gp.connect(keyhost.url, keyhost.admin_token)
    token = admin.grant(f"s_{random.randrange(10**9)}", admin.dataset(ds), allows)
    assert token is not None
    return gp.connect(keyhost.url, token)


def test_search_cells_are_pattern_free_at_rest(names: tuple[pl.DataFrame, pl.DataFrame, str]) -> None:
    df, enc, _ = names
    cells = enc["first"].ext.storage().struct.field("search")
    assert cells.null_count() == df["first"].null_count()
    lengths = cells.drop_nulls().bin.size().unique().to_list()
    assert lengths == [(3 + 3 + 30) * 8]  # one size for every row: no length leaks (max_length 32)
    # equal values (the same first name in many rows) give unrelated cells; every 8-byte tag
    # of the whole column is distinct: equal prefixes, suffixes and q-grams never repeat at rest
    common = df.group_by("first").len().sort("len", descending=True)["first"][0]
    assert (df["first"] == common).sum() > 20
    same = cells.filter(df["first"] == common)
    assert same.n_unique() == same.len()
    tags = [bytes(c[i : i + 8]) for c in cells.drop_nulls().to_list() for i in range(0, len(c), 8)]
    assert len(set(tags)) == len(tags)


def test_results_equal_polars_string_functions(
    keyhost: KeyhostProcess, names: tuple[pl.DataFrame, pl.DataFrame, str]
) -> None:
    df, enc, ds = names
    an = _analyst(keyhost, [gp.allow.search("first"), gp.allow.search("last")], ds)
    cases = [
        ("first", "starts_with", "J"),
        ("first", "starts_with", "Ma"),
        ("first", "starts_with", "Chr"),
        ("first", "starts_with", "Chris"),  # 5 characters: through q-grams anchored at 0
        ("first", "starts_with", "Än"),
        ("first", "ends_with", "y"),
        ("first", "ends_with", "ne"),
        ("first", "ends_with", "ine"),
        ("first", "contains", "ann"),
        ("first", "contains", "ica"),
        ("first", "contains", "arl"),
        ("first", "contains", "Christopher"),
        ("first", "contains", "zzz"),
        ("first", "contains", ""),
        ("last", "starts_with", "Mc"),
        ("last", "starts_with", "S"),
        ("last", "contains", "son"),
        ("last", "contains", "ill"),
        ("last", "contains", "üll"),
    ]
    ghost = [getattr(pl.col(c).ghost, op)(v).alias(f"{i}") for i, (c, op, v) in enumerate(cases)]
    plain = [
        (pl.col(c).str.contains(v, literal=True) if op == "contains" else getattr(pl.col(c).str, op)(v)).alias(f"{i}")
        for i, (c, op, v) in enumerate(cases)
    ]
    an.reset_stats()
    got = enc.lazy().select(ghost).ghost.collect(an)
    assert an.stats()["answer_key_requests"] == 1  # every token of the query in one request
    want = df.select(plain)
    for i, case in enumerate(cases):
        assert got[f"{i}"].to_list() == want[f"{i}"].to_list(), case
        assert want[f"{i}"].sum() > 0 or case[2] == "zzz", case  # the cases find rows
    # as a filter, and under a plain collect (the kernel fetches its token itself)
    q = enc.lazy().filter(pl.col("last").ghost.contains("son") & pl.col("first").ghost.starts_with("J"))
    n = df.filter(pl.col("last").str.contains("son", literal=True) & pl.col("first").str.starts_with("J")).height
    assert q.ghost.collect(an).height == n > 0
    clear_tokens()
    assert q.collect().height == n


def test_tokens_are_limited_to_their_grant_constants_and_columns(
    keyhost: KeyhostProcess, names: tuple[pl.DataFrame, pl.DataFrame, str]
) -> None:
    df, enc, ds = names
    # a search grant on `first` only, for at most 2 distinct constants
    an = _analyst(keyhost, [gp.allow.search("first", max_constants=2), gp.allow.match("last")], ds)
    clear_tokens()
    with pytest.raises(gp.PermissionDenied, match="search"):
        enc.lazy().select(pl.col("last").ghost.starts_with("Mc")).ghost.collect(an)  # a match grant is not enough
    enc.lazy().select(pl.col("first").ghost.starts_with("J")).ghost.collect(an)
    enc.lazy().select(pl.col("first").ghost.contains("ann")).ghost.collect(an)
    enc.lazy().select(pl.col("first").ghost.contains("ann")).ghost.collect(an)  # re-issuing one is allowed
    with pytest.raises(gp.PermissionDenied) as e:
        enc.lazy().select(pl.col("first").ghost.contains("ica")).ghost.collect(an)
    assert e.value.reason == "max_constants"
    # a token answers only its constant and column: the kernel refuses a token of `first` used
    # for `last`, and a prefix token placed under another constant answers its own constant
    admin = gp.connect(keyhost.url, keyhost.admin_token)
    meta_first = enc["first"].dtype.meta()  # type: ignore[attr-defined]
    meta_last = enc["last"].dtype.meta()  # type: ignore[attr-defined]
    (res,) = admin.answer_keys(
        [
            {
                "op": "search",
                "dataset_id": meta_first["dataset_id"],
                "column_id": meta_first["column_id"],
                "epoch": meta_first["epoch"],
                "kind": "prefix",
                "q": 0,
                "constant": "Ma",
            }
        ]
    )
    tok = base64.b64decode(res["token"])

    def need(meta: dict[str, object], constant: str) -> dict[str, object]:
        return {
            "keyhost": meta["keyhost"],
            "dataset_id": meta["dataset_id"],
            "column_id": meta["column_id"],
            "epoch": meta["epoch"],
            "constant": {"text": constant},
            "search": {"kind": "prefix", "q": 0},
        }

    clear_tokens()
    _internal.insert_match_tokens([need(meta_last, "Ma")], [tok])
    with pytest.raises(gp.GhostError, match="another column"), gp.ghost_errors():
        enc.lazy().select(pl.col("last").ghost.starts_with("Ma")).collect()
    _internal.insert_match_tokens([need(meta_first, "Jo")], [tok])
    got = enc.lazy().select(pl.col("first").ghost.starts_with("Jo")).collect()["first"]
    assert got.to_list() == df["first"].str.starts_with("Ma").to_list()  # "Ma" rows, not "Jo" rows
    clear_tokens()
    # the audit names the constant by a digest, never in clear
    audit = admin.audit(ds).filter(pl.col("operation") == "search")
    params = [str(p) for p in audit["params"].to_list()]
    assert sum("constant_digest" in p for p in params) >= 4
    assert not any("ann" in p for p in params)
    assert "refused" in audit["decision"].to_list()  # the refusal is audited too


def test_unsupported_searches_are_refused_with_typed_errors(
    keyhost: KeyhostProcess, names: tuple[pl.DataFrame, pl.DataFrame, str], admin: gp.Session, dataset: gp.Dataset
) -> None:
    df, enc, ds = names
    an = _analyst(keyhost, [gp.allow.search("first"), gp.allow.search("last")], ds)
    for expr, words in [
        (pl.col("first").ghost.contains("an"), "at least q = 3"),
        (pl.col("first").ghost.ends_with("anne"), "suffix length"),
        (pl.col("last").ghost.ends_with("on"), "suffix length"),
    ]:
        with pytest.raises(gp.UnsupportedOperation, match=words):
            enc.lazy().select(expr).ghost.collect(an)
    plain = gp.encrypt(pl.DataFrame({"x": ["a"]}), dataset, {"x": gp.text()})
    with pytest.raises(gp.UnsupportedOperation, match="search"):
        plain.lazy().select(pl.col("x").ghost.contains("abc")).ghost.collect(admin)
    with pytest.raises(TypeError):
        pl.col("x").ghost.contains(3)  # type: ignore[arg-type]
    for bad in [{"prefix": (0,)}, {"prefix": (65,)}, {"substring": 0}, {"substring": 40}]:
        with pytest.raises(gp.EncryptionError):
            gp.text(**bad)  # type: ignore[arg-type]
    # a value longer than max_length is refused before anything is registered on the keyhost
    before = len(admin.audit(dataset))
    with pytest.raises(gp.EncryptionError, match="max_length"):
        gp.encrypt(pl.DataFrame({"y": ["a" * 33]}), dataset, {"y": gp.text(substring=3)})
    assert len(admin.audit(dataset)) == before
    long_ok = gp.encrypt(pl.DataFrame({"y": ["a" * 33 + "xyz"]}), dataset, {"y": gp.text(substring=3, max_length=40)})
    assert long_ok.lazy().select(pl.col("y").ghost.contains("axyz")).ghost.collect(admin)["y"].to_list() == [True]


def test_plain_string_functions_on_ciphertext_name_the_ghost_ones(
    keyhost: KeyhostProcess, names: tuple[pl.DataFrame, pl.DataFrame, str]
) -> None:
    _, enc, ds = names
    an = _analyst(keyhost, [gp.allow.search("first")], ds)
    for expr in [
        pl.col("first").str.starts_with("J"),
        pl.col("first").str.contains("ann"),
        pl.col("first").str.ends_with("y"),
        pl.col("first").str.len_chars(),
    ]:
        with pytest.raises(gp.UnsupportedOperation, match="ghost.starts_with / ghost.ends_with / ghost.contains"):
            enc.lazy().select(expr).ghost.collect(an)
        with pytest.raises(gp.UnsupportedOperation, match="ghost.contains"):
            gp.collect(enc.lazy().with_columns(x=expr), an)
        # a plain collect fails inside Polars before any ghostpii code runs (documented);
        # gp.ghost_errors() turns it into the same typed error
        with pytest.raises(pl.exceptions.PolarsError, match="ghost"):
            enc.lazy().select(expr).collect()
        with pytest.raises(gp.UnsupportedOperation, match="ghost.starts_with"), gp.ghost_errors():
            enc.lazy().select(expr).collect()


def test_the_keyhost_refuses_bad_search_descriptors_typed_and_audited(
    keyhost: KeyhostProcess, names: tuple[pl.DataFrame, pl.DataFrame, str], admin: gp.Session, dataset: gp.Dataset
) -> None:
    _, enc, ds = names
    meta = enc["first"].dtype.meta()  # type: ignore[attr-defined]
    plain = gp.encrypt(pl.DataFrame({"x": ["abc"]}), dataset, {"x": gp.text()})
    pmeta = plain["x"].dtype.meta()  # type: ignore[attr-defined]

    def desc(m: dict[str, object], kind: str, constant: str, q: int = 3) -> dict[str, object]:
        return {"op": "search", "dataset_id": m["dataset_id"], "column_id": m["column_id"], "epoch": m["epoch"],
                "kind": kind, "q": q, "constant": constant}  # fmt: skip

    for d, words in [
        (desc(meta, "regex", "a.*"), "unknown"),
        (desc(meta, "substring", "ab"), "at least q"),
        (desc(meta, "prefix", ""), "1 to 1024"),
        (desc(pmeta, "prefix", "a"), "search"),
    ]:
        with pytest.raises(gp.KeyhostError, match=words) as e:
            admin.answer_keys([d])
        assert e.value.reason == "invalid_request", e.value.reason
    # grant parameters other than max_constants are refused for search grants
    with pytest.raises(gp.KeyhostError, match="constants"):
        admin.grant("s_bad", admin.dataset(ds), [gp.allow.Allow("search", "first", {"constants": ["a"]})])
    with pytest.raises(ValueError):
        gp.allow.search("first", max_constants=0)
