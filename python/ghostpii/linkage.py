"""``gp.link``: privacy-preserving record linkage over the ``fuzzy`` facet.

Each side's rows are encoded (at encryption time) as hardened Bloom filters of character
bigrams, sealed per row. ``gp.link`` obtains the unsealing seeds of both sides' rows in ONE
keyhost request (a ``link`` grant per column), ORs the fields of a row into one record
encoding and links by Dice similarity in Rust: MinHash blocking, then a greedy one-to-one
assignment by decreasing similarity. See docs/threat-model.md for what the encodings leak.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import polars as pl

from ghostpii import _internal, _protocol
from ghostpii.client import Session
from ghostpii.dtypes import is_encrypted
from ghostpii.errors import CiphertextError, GhostError, UnsupportedOperation, ghost_errors
from ghostpii.keyed import pads_descriptor

__all__ = ["DEFAULT_THRESHOLD", "LinkError", "link", "similarity"]

#: default threshold of :func:`link` (field-level weighted Dice; tuned on FEBRL4, see benchmarks/linkage.md)
DEFAULT_THRESHOLD = 0.8


class LinkError(GhostError, ValueError):
    """An argument of :func:`link` that cannot be used (threshold, ``on`` columns)."""


def _frame(data: pl.LazyFrame | pl.DataFrame, on: Sequence[str], side: str) -> pl.DataFrame:
    lf = data.lazy() if isinstance(data, pl.DataFrame) else data
    if not isinstance(lf, pl.LazyFrame):
        raise TypeError(f"gp.link takes polars LazyFrames or DataFrames, got {type(data).__name__} as {side}")
    schema = lf.collect_schema()
    missing = [c for c in on if c not in schema]
    if missing:
        raise LinkError(f"the {side} frame has no column(s) {missing}; it has {schema.names()}")
    plain = [c for c in on if not is_encrypted(schema[c])]
    if plain:
        raise UnsupportedOperation(
            f"gp.link links encrypted columns; {plain} of the {side} frame are not encrypted "
            f"(encrypt them with gp.text(fuzzy=True, join_domain=...))"
        )
    with ghost_errors():
        return lf.select(on).collect()


def _meta(s: pl.Series) -> dict[str, Any]:
    meta_json, _ = _internal.fuzzy_rids(s)
    out: dict[str, Any] = json.loads(meta_json)
    return out


def link(
    left: pl.LazyFrame | pl.DataFrame,
    right: pl.LazyFrame | pl.DataFrame,
    *,
    on: Sequence[str],
    threshold: float = DEFAULT_THRESHOLD,
    session: Session,
    weights: Mapping[str, float] | None = None,
    encoding: Literal["fields", "record"] = "record",
) -> pl.DataFrame:
    """Link the rows of ``left`` and ``right`` that describe the same entity.

    ``on`` names columns present on both sides, encrypted with ``fuzzy=True`` in one join
    domain. Returns ``pl.DataFrame(left_index, right_index, similarity)``: each row of one side
    is linked to at most one row of the other, best matches first (greedy by decreasing Dice
    similarity of the rows' record encodings), only pairs with ``similarity >= threshold``.
    Indices are row positions of the collected frames. Null fields add nothing to a record;
    a row whose ``on`` fields are all null (or empty strings) is never linked.

    ``encoding="record"`` (default) ORs the fields of a row into one encoding and blocks with
    MinHash LSH; ``encoding="fields"`` scores the weighted mean of the fields' Dice
    similarities (``weights``, default equal; fields null on either side are left out) and
    compares every pair up to 64 million pairs, beyond that the pairs that share a MinHash band
    in any field. On FEBRL4 (all ten fields, given name and surname encrypted with
    ``fuzzy_space="name"``) the defaults give precision 1.000 / recall 0.977, ``threshold=0.7``
    1.000 / 0.9994; on given name, surname and date of birth alone ``threshold=0.6`` gives
    0.997 / 0.973 (benchmarks/linkage.md).
    """
    if weights is not None and encoding == "record":
        raise LinkError("weights apply to encoding='fields' (a record encoding ORs its fields: it has no weights)")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 1:
        raise LinkError(f"threshold must be a number in (0, 1], got {threshold!r}")
    if encoding not in ("fields", "record"):
        raise LinkError(f"encoding must be 'fields' or 'record', got {encoding!r}")
    w = _weights(on, weights)
    lf, rf, lseeds, rseeds = _unsealing_seeds(left, right, on, session)
    if encoding == "fields":
        li, ri, sim = _internal.link_fields_encrypted(
            [lf[c] for c in on], lseeds, [rf[c] for c in on], rseeds, w, float(threshold)
        )
    else:
        li, ri, sim = _internal.link_encrypted(
            [lf[c] for c in on], lseeds, [rf[c] for c in on], rseeds, float(threshold)
        )
    return _pairs(li, ri, sim)


def _weights(on: Sequence[str], weights: Mapping[str, float] | None) -> list[float]:
    if isinstance(on, str) or not on:
        raise LinkError(f"on must be a non-empty list of column names, got {on!r}")
    if weights is None:
        return [1.0] * len(on)
    unknown = sorted(set(weights) - set(on))
    if unknown:
        raise LinkError(f"weights name column(s) {unknown} that are not in on={list(on)}")
    out = [weights.get(c, 1.0) for c in on]
    for c, x in zip(on, out, strict=True):
        if isinstance(x, bool) or not isinstance(x, int | float) or not 0 <= x < float("inf"):
            raise LinkError(f"the weight of {c!r} must be a finite number >= 0, got {x!r}")
    if not any(out):
        raise LinkError("at least one weight must be positive")
    return [float(x) for x in out]


def _pairs(li: list[int], ri: list[int], sim: list[float]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "left_index": pl.Series(li, dtype=pl.UInt32),
            "right_index": pl.Series(ri, dtype=pl.UInt32),
            "similarity": pl.Series(sim, dtype=pl.Float64),
        }
    )


def _unsealing_seeds(
    left: pl.LazyFrame | pl.DataFrame, right: pl.LazyFrame | pl.DataFrame, on: Sequence[str], session: Session
) -> tuple[pl.DataFrame, pl.DataFrame, list[bytes], list[bytes]]:
    """Both sides collected, and the seeds that unseal their fuzzy cells: ONE keyhost request
    (a ``link`` grant per column and side)."""
    if isinstance(on, str) or not on:
        raise LinkError(f"on must be a non-empty list of column names, got {on!r}")
    if len(set(on)) != len(on):
        raise LinkError(f"on names a column twice: {list(on)}")
    lf, rf = _frame(left, on, "left"), _frame(right, on, "right")
    descriptors: list[_protocol.Descriptor] = []
    slots: dict[tuple[str, str], int | None] = {}
    for c in on:
        lm, rm = _meta(lf[c]), _meta(rf[c])
        for m in (lm, rm):
            if m.get("keyhost") != session.keyhost_id:
                raise CiphertextError(
                    f"column {c!r} was encrypted under keyhost {m.get('keyhost')!r}, but the session is "
                    f"connected to keyhost {session.keyhost_id!r}"
                )
        same_column = (lm["dataset_id"], lm["column_id"]) == (rm["dataset_id"], rm["column_id"])
        if not same_column and (lm.get("join_domain") is None or lm.get("join_domain") != rm.get("join_domain")):
            raise UnsupportedOperation(
                f"column {c!r} cannot be linked: the left side is in join domain {lm.get('join_domain')!r}, the "
                f"right side in {rm.get('join_domain')!r}; only columns of one join domain link (encrypt both with "
                f"join_domain=...)"
            )
        if lm.get("fuzzy_space") != rm.get("fuzzy_space"):
            raise UnsupportedOperation(
                f"column {c!r} cannot be linked: its bigrams are hashed in space {lm.get('fuzzy_space')!r} on the "
                f"left and {rm.get('fuzzy_space')!r} on the right (encrypt both with the same gp.text(fuzzy_space=...))"
            )
        for side, frame, m in (("left", lf, lm), ("right", rf, rm)):
            _, rids = _internal.fuzzy_rids(frame[c])
            if frame[c].null_count() == frame.height:
                slots[(side, c)] = None
                continue
            slots[(side, c)] = len(descriptors)
            need = {**m, "facet": "fuzzy"}
            descriptors.append(pads_descriptor(need, rids))

    results = session.answer_keys(descriptors)

    def seeds(side: str) -> list[bytes]:
        out = []
        for c in on:
            i = slots[(side, c)]
            out.append(b"" if i is None else results[i]["pads"])
        return out

    return lf, rf, seeds("left"), seeds("right")


#: most pairs :func:`similarity` returns as a full matrix (without ``top_k`` or ``threshold``)
MAX_MATRIX = 50_000_000


def similarity(
    left: pl.LazyFrame | pl.DataFrame,
    right: pl.LazyFrame | pl.DataFrame,
    *,
    on: Sequence[str],
    session: Session,
    metric: Literal["dice", "jaccard"] = "dice",
    top_k: int | None = None,
    threshold: float = 0.0,
    weights: Mapping[str, float] | None = None,
) -> pl.DataFrame:
    """Pairwise similarity of the rows of ``left`` and ``right`` over encrypted ``fuzzy`` columns.

    Returns the matrix in long format, ``pl.DataFrame(left_index, right_index, similarity)``
    (row positions of the collected frames; joinable with ``with_row_index``): every pair, or
    with ``top_k=k`` the k most similar right rows of each left row (best first, ties by lower
    right index), only pairs with ``similarity >= threshold``. The similarity of two rows is the
    weighted mean over the ``on`` fields present on both sides (``weights``, default equal) of
    ``metric`` — ``"dice"`` (2|A∩B|/(|A|+|B|)) or ``"jaccard"`` (|A∩B|/|A∪B|) — of their
    hardened Bloom-filter encodings: an approximation of the same measure on the sets of
    character bigrams (docs/threat-model.md, "fuzzy", says by how much and what it reveals).
    Computed in Rust (rayon, POPCNT); the seeds that unseal the encodings come in ONE keyhost
    request under ``gp.allow.link`` grants. Rows with no field present on both sides get no pair.
    """
    if metric not in ("dice", "jaccard"):
        raise LinkError(f"metric must be 'dice' or 'jaccard', got {metric!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise LinkError(f"top_k must be a positive integer or None, got {top_k!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise LinkError(f"threshold must be a number in [0, 1], got {threshold!r}")
    w = _weights(on, weights)
    lf, rf, lseeds, rseeds = _unsealing_seeds(left, right, on, session)
    if top_k is None and threshold == 0 and lf.height * rf.height > MAX_MATRIX:
        raise UnsupportedOperation(
            f"the full similarity matrix of {lf.height} x {rf.height} rows has more than {MAX_MATRIX:,} pairs; "
            f"ask for top_k=... or a threshold=..., or use gp.link for one-to-one links"
        )
    li, ri, sim = _internal.similarity_encrypted(
        [lf[c] for c in on], lseeds, [rf[c] for c in on], rseeds, w, metric, top_k, float(threshold)
    )
    return _pairs(li, ri, sim)
