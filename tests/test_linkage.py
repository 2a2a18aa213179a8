"""Record linkage over ciphertext: ``gp.link`` on the sealed, hardened Bloom-filter facet."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest

import ghostpii as gp
from conftest import KeyhostProcess
from ghostpii import _internal
from ghostpii.keyed import fuzzy_text, pads_descriptor

RLDATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "rldata500.csv"
ON = ["fname_c1", "lname_c1", "dob"]


def _rldata() -> tuple[pl.DataFrame, pl.DataFrame]:
    path = RLDATA if RLDATA.exists() else Path("/work/shared/datasets/rldata500.csv")
    df = pl.read_csv(path).with_columns(dob=pl.date(pl.col("by"), pl.col("bm"), pl.col("bd")))
    df = df.with_row_index("row")
    first = df.group_by("uniqueID").agg(pl.col("row").min())["row"]
    left = df.filter(pl.col("row").is_in(first.implode()))
    right = df.filter(~pl.col("row").is_in(first.implode()))
    return left, right


def _truth(left: pl.DataFrame, right: pl.DataFrame) -> set[tuple[int, int]]:
    li = left.with_row_index("li").select("li", "uniqueID")
    ri = right.with_row_index("ri").select("ri", "uniqueID")
    pairs = li.join(ri, on="uniqueID")
    return set(zip(pairs["li"].to_list(), pairs["ri"].to_list(), strict=True))


def _scores(found: set[tuple[int, int]], truth: set[tuple[int, int]]) -> tuple[float, float]:
    tp = len(found & truth)
    return (tp / len(found) if found else 0.0), tp / len(truth)


def _analyst(keyhost: KeyhostProcess, admin: gp.Session, ds: list[gp.Dataset]) -> gp.Session:
    name = f"l_{random.randrange(10**9)}"
    token = None
    for d in ds:
        token = admin.grant(name, d, [gp.allow.link(c) for c in ON])
    assert token is not None
    return gp.connect(keyhost.url, token)


@pytest.fixture()
def linked(admin: gp.Session) -> tuple[gp.Dataset, gp.Dataset, pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    admin.create_join_domain("persons")
    tag = random.randrange(10**9)
    a, b = admin.create_dataset(f"rl_left_{tag}"), admin.create_dataset(f"rl_right_{tag}")
    schema = {
        "fname_c1": gp.text(fuzzy=True, join_domain="persons"),
        "lname_c1": gp.text(fuzzy=True, join_domain="persons"),
        "dob": gp.date(fuzzy=True, join_domain="persons"),
    }
    left, right = _rldata()
    return a, b, left, right, gp.encrypt(left, a, schema), gp.encrypt(right, b, schema)


def test_fuzzy_cells_are_sealed_and_pattern_free(
    linked: tuple[gp.Dataset, gp.Dataset, pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame],
) -> None:
    _, _, left, _, el, _ = linked
    cells = el["lname_c1"].ext.storage().struct.field("fuzzy")
    assert cells.is_unique().all()  # equal surnames, different bytes
    assert left["lname_c1"].n_unique() < left.height
    # sealed: bit weights look uniform (a raw Bloom filter has ~10% of its bits set)
    weights = [bin(int.from_bytes(c, "little")).count("1") for c in cells.to_list()[:100]]
    assert 400 < sum(weights) / len(weights) < 624


def test_link_precision_and_recall_on_rldata500_vs_plaintext_dice(
    keyhost: KeyhostProcess,
    admin: gp.Session,
    linked: tuple[gp.Dataset, gp.Dataset, pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame],
) -> None:
    a, b, left, right, el, er = linked
    an = _analyst(keyhost, admin, [a, b])
    truth = _truth(left, right)
    an.reset_stats()
    out = gp.link(el.lazy(), er.lazy(), on=ON, threshold=0.8, session=an)
    assert an.stats()["answer_key_requests"] == 1
    assert out.columns == ["left_index", "right_index", "similarity"]
    assert out["similarity"].min() >= 0.8
    assert out["left_index"].is_unique().all() and out["right_index"].is_unique().all()
    p, r = _scores(set(zip(out["left_index"].to_list(), out["right_index"].to_list(), strict=True)), truth)
    lp = [fuzzy_text(left[c].cast(pl.String) if c != "dob" else left[c]) for c in ON]
    rp = [fuzzy_text(right[c].cast(pl.String) if c != "dob" else right[c]) for c in ON]
    bl, br, _ = _internal.link_plaintext(lp, rp, 0.8)
    bp, brc = _scores(set(zip(bl, br, strict=True)), truth)
    print(f"rldata500: ghostpii precision {p:.3f} recall {r:.3f}; plaintext bigram Dice {bp:.3f} / {brc:.3f}")
    assert p >= 0.9 and r >= 0.8
    assert r >= brc - 0.1 and p >= bp - 0.1


def test_link_bad_input_and_grants(
    keyhost: KeyhostProcess,
    admin: gp.Session,
    dataset: gp.Dataset,
    linked: tuple[gp.Dataset, gp.Dataset, pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame],
) -> None:
    a, b, left, right, el, er = linked
    for t in (0, 0.0, -0.1, 1.5, True, float("nan")):
        with pytest.raises(gp.LinkError, match="threshold"):
            gp.link(el, er, on=ON, threshold=t, session=admin)
    with pytest.raises(gp.LinkError, match="no column"):
        gp.link(el, er, on=["nope"], session=admin)
    with pytest.raises(gp.LinkError, match="non-empty"):
        gp.link(el, er, on=[], session=admin)
    with pytest.raises(gp.UnsupportedOperation, match="not encrypted"):
        gp.link(left, right, on=ON, session=admin)
    # a column outside the join domain does not link with one inside it
    lone = gp.encrypt(right.select(ON), dataset, {"fname_c1": gp.text(fuzzy=True), "lname_c1": gp.text(fuzzy=True),
                                                  "dob": gp.date(fuzzy=True)})  # fmt: skip
    with pytest.raises(gp.UnsupportedOperation, match="join domain"):
        gp.link(el, lone, on=ON, session=admin)
    other = admin.create_dataset(f"nofuzzy_{random.randrange(10**9)}")
    nolink = gp.encrypt(right.select(["fname_c1"]), other, {"fname_c1": gp.text(match=True)})
    with pytest.raises(gp.GhostError, match="fuzzy"):
        gp.link(el, nolink, on=["fname_c1"], session=admin)
    # without link grants: denied, naming the grant
    token = admin.grant(f"nolink_{random.randrange(10**9)}", a, [gp.allow.decrypt("dob")])
    assert token is not None
    with pytest.raises(gp.PermissionDenied, match="link"):
        gp.link(el, er, on=ON, session=gp.connect(keyhost.url, token))


def test_nulls_empty_and_unicode(admin: gp.Session) -> None:
    admin.create_join_domain("names")
    ds = admin.create_dataset(f"uni_{random.randrange(10**9)}")
    left = pl.DataFrame({"n": ["Müller", None, "", "  ÉLODIE ", "ＴＡＲＯ"]})
    right = pl.DataFrame({"n": ["mueller", "muller", None, "", "Élodie", "taro"]})
    schema = {"n": gp.text(fuzzy=True, join_domain="names")}
    el, er = gp.encrypt(left, ds, schema), gp.encrypt(right, ds, schema)
    out = gp.link(el, er, on=["n"], threshold=0.5, session=admin)
    pairs = set(zip(out["left_index"].to_list(), out["right_index"].to_list(), strict=True))
    assert (3, 4) in pairs  # case, accents kept, blanks trimmed: "élodie" both sides
    assert (4, 5) in pairs  # NFKC folds full-width letters
    assert (0, 1) in pairs  # "müller" vs "muller": one bigram pair differs
    assert not any(i in (1, 2) for i, _ in pairs)  # nulls and empty strings are never linked
    assert not any(j in (2, 3) for _, j in pairs)
    empty = gp.link(el.head(0), er, on=["n"], session=admin)
    assert empty.height == 0


def test_blocking_finds_the_exhaustive_pairs(admin: gp.Session) -> None:
    admin.create_join_domain("bulk")
    ds = admin.create_dataset(f"bulk_{random.randrange(10**9)}")
    rng = random.Random(5)
    names = pl.read_csv("/work/shared/datasets/large_names.csv").head(3000)
    names.columns = [c.strip() for c in names.columns]
    full = (names["first"] + " " + names["last"].str.strip_chars()).to_list()

    def typo(s: str) -> str:
        i = rng.randrange(len(s))
        return s[:i] + rng.choice("aeiou") + s[i + 1 :]

    left = pl.DataFrame({"n": full})
    right = pl.DataFrame({"n": [typo(s) for s in full]})
    schema = {"n": gp.text(fuzzy=True, join_domain="bulk")}
    el, er = gp.encrypt(left, ds, schema), gp.encrypt(right, ds, schema)
    blocked = gp.link(el, er, on=["n"], threshold=0.8, session=admin)
    (meta, lr), (_, rr) = _internal.fuzzy_rids(el["n"]), _internal.fuzzy_rids(er["n"])
    m = {**json.loads(meta), "facet": "fuzzy"}
    mr = {**json.loads(_internal.fuzzy_rids(er["n"])[0]), "facet": "fuzzy"}
    res = admin.answer_keys([pads_descriptor(m, lr), pads_descriptor(mr, rr)])
    li, ri, _ = _internal.link_encrypted([el["n"]], [res[0]["pads"]], [er["n"]], [res[1]["pads"]], 0.8, True)
    exhaustive = set(zip(li, ri, strict=True))
    found = set(zip(blocked["left_index"].to_list(), blocked["right_index"].to_list(), strict=True))
    assert len(found & exhaustive) >= 0.97 * len(exhaustive)
    assert len(exhaustive) > 1000
    # gp.link compares every pair at this size (9 M pairs): force the MinHash blocking it uses
    # beyond 64 M pairs, which must find the same pairs too
    bi, bj, _ = _internal.link_encrypted([el["n"]], [res[0]["pads"]], [er["n"]], [res[1]["pads"]], 0.8, blocked=True)
    assert len(set(zip(bi, bj, strict=True)) & exhaustive) >= 0.97 * len(exhaustive)
