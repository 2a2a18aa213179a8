"""Scoring encrypted rows: ``gp.score(frame, weights, session=an)`` reveals per row only ``x·w``.

The Rust kernel combines the ``num`` cells of each row with integer weights (the float weights
on a common binary fixed-point scale), the keyhost returns in ONE answer-key request the per-row
keys ``Σ_j a_j·PRF(k_j, rid)`` under ``score`` grants (``gp.allow.score``), and the kernel
subtracts them: the result is ``Σ_j a_j·x_j`` exactly, scaled back to the user's units.
Plaintext columns in ``weights`` are added locally; the intercept is public.

Fixed point: a column stored with ``s`` decimals holds ``X = x·10^s``; its weight ``w`` becomes
``a = round(w·2^F / 10^s)`` with ONE exponent ``F`` per call, the largest for which every
``|a| ≤ 2^62`` and ``Σ |a|·max(|lo|, |hi|) < 2^127`` over the declared bounds (unbounded columns
count ``2^63``), so no score can wrap the 128-bit ring. The score is ``Σ a·X / 2^F``: exact for
the rounded weights; each weight is off by at most ``10^s / 2^(F+1)`` (relative ``2^-63`` for
the largest). ``F`` depends only on the weights and the columns' metadata, so the same weights
give the same integer vector (the keyhost answers a vector it answered before again).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import polars as pl

from ghostpii import _internal, _protocol
from ghostpii.client import Session
from ghostpii.dtypes import is_encrypted, is_sealed, is_sealed_rows
from ghostpii.errors import CiphertextError, GhostError, UnsupportedOperation

__all__ = ["score", "scale_weights"]

_MAX_WEIGHT = 1 << 62
_RING = 1 << 127
_UNBOUNDED = 1 << 63
_MAX_BITS = 960


def _weight(column: str, w: Any) -> float:
    if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w):
        raise TypeError(f"the weight of {column!r} must be a finite number, got {w!r}")
    return float(w)


def scale_weights(weights: list[float], metas: list[dict[str, Any]]) -> tuple[list[int], int]:
    """Integer weights ``a_j`` and the exponent ``F`` for float weights of encrypted columns
    (``metas``: their metadata; see the module docstring)."""
    units = [Fraction(w) / 10 ** int(m["scale"]) for w, m in zip(weights, metas, strict=True)]
    bound = [max(abs(int(m["bounds"][0])), abs(int(m["bounds"][1]))) if m.get("bounds") else _UNBOUNDED for m in metas]
    nonzero = [abs(u) for u in units if u != 0]
    if not nonzero:
        raise ValueError("every weight of an encrypted column is 0; give at least one a non-zero weight")
    per_unit = sum(abs(u) * b for u, b in zip(units, bound, strict=True))
    # first guess from floats, then the exact conditions decide
    guess = math.floor(min(62 - math.log2(max(nonzero)), 126 - math.log2(per_unit))) + 2
    for f in range(min(guess, _MAX_BITS), -1, -1):
        ints = [round(u * 2**f) for u in units]
        if (
            max(abs(a) for a in ints) <= _MAX_WEIGHT
            and sum(abs(a) * b for a, b in zip(ints, bound, strict=True)) < _RING
        ):
            return ints, f
    raise UnsupportedOperation(
        f"weights {weights} are too large for the columns' declared bounds: a score could exceed 2^127 "
        f"and wrap the 128-bit ring; use smaller weights or encrypt with tighter bounds"
    )


def _plain_part(df: pl.DataFrame, plain: dict[str, float]) -> pl.Series | None:
    for c in plain:
        d = df.schema[c]
        if not (d.is_numeric() or d == pl.Boolean):
            raise UnsupportedOperation(
                f"gp.score(): the plaintext column {c!r} has dtype {d}; only numeric and boolean columns "
                f"can be weighted"
            )
    if not plain:
        return None
    expr = pl.sum_horizontal([pl.col(c).cast(pl.Float64) * w for c, w in plain.items()])
    # sum_horizontal ignores nulls; a null input makes the score null
    nulls = pl.any_horizontal([pl.col(c).is_null() for c in plain])
    return df.select(pl.when(nulls).then(None).otherwise(expr)).to_series()


def score(
    frame: pl.LazyFrame | pl.DataFrame,
    weights: Mapping[str, float],
    *,
    intercept: float = 0.0,
    session: Session,
) -> pl.Series:
    """Per-row ``intercept + Σ w·column`` (Float64, named ``score``; null where an input is null).

    Encrypted columns (``num`` facet, one ``gp.encrypt`` call, one dataset) need a ``score``
    grant each (``gp.allow.score``); their row values never become plaintext, only the score.
    All rows are scored with ONE keyhost request. The keyhost refuses a weight vector that,
    with those it answered this identity before on the dataset, would span a unit vector
    (that would decrypt a column); scoring again with the same weights is always answered.
    Plaintext numeric columns may be weighted too (added locally).
    """
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError("gp.score() needs a mapping of at least one column name to its weight")
    ws = {str(c): _weight(str(c), w) for c, w in weights.items()}
    intercept = _weight("intercept", intercept)
    if isinstance(frame, pl.LazyFrame):
        from ghostpii.errors import ghost_errors
        from ghostpii.plan_guard import check_plan
        from ghostpii.tokens import prefetch

        lf = frame.select(list(ws))
        check_plan(lf)
        with ghost_errors():
            prefetch(lf, session)  # comparison tokens of the plan's filters: one request
            df = lf.collect()
    elif isinstance(frame, pl.DataFrame):
        df = frame.select(list(ws))
    else:
        raise TypeError(f"gp.score() takes a polars LazyFrame or DataFrame, got {type(frame).__name__}")
    for c, d in df.schema.items():
        if is_sealed(d) or is_sealed_rows(d):
            raise UnsupportedOperation(f"gp.score(): column {c!r} is sealed; score encrypted or plaintext columns")
    enc = [c for c in ws if is_encrypted(df.schema[c])]
    plain = {c: w for c, w in ws.items() if c not in enc}
    total = pl.Series("score", [intercept] * df.height, dtype=pl.Float64)
    part = _plain_part(df, plain)
    if part is not None:
        total = total + part
    if enc:
        total = total + _encrypted_part(df, {c: ws[c] for c in enc}, session)
    return total.alias("score")


def _encrypted_part(df: pl.DataFrame, ws: dict[str, float], session: Session) -> pl.Series:
    metas = [df.schema[c].meta() for c in ws]  # type: ignore[attr-defined]
    first = metas[0]
    for c, m in zip(ws, metas, strict=True):
        if m.get("keyhost") != session.keyhost_id:
            raise CiphertextError(
                f"column {c!r} was encrypted under keyhost {m.get('keyhost')!r}, but this session is connected "
                f"to keyhost {session.keyhost_id!r}"
            )
        if m["dataset_id"] != first["dataset_id"]:
            raise UnsupportedOperation(
                f"gp.score() combines encrypted columns of one dataset; {list(ws)[0]!r} and {c!r} differ"
            )
        if "num" not in m.get("facets", []):
            raise UnsupportedOperation(f"gp.score(): column {c!r} has no 'num' facet (text cannot be scored)")
    ints, bits = scale_weights(list(ws.values()), metas)
    used = [(c, a, m) for (c, m), a in zip(zip(ws, metas, strict=True), ints, strict=True) if a != 0]
    rid0 = df[used[0][0]].ext.storage().struct.field("rid")
    for c, _, _ in used[1:]:
        rid = df[c].ext.storage().struct.field("rid")
        if not ((rid == rid0) | rid.is_null() | rid0.is_null()).all():
            raise UnsupportedOperation(
                f"gp.score(): columns {used[0][0]!r} and {c!r} were encrypted in different gp.encrypt calls "
                f"(their row ids differ), so they cannot be combined row by row"
            )
    try:
        rows = _internal.ScoreRows([df[c] for c, _, _ in used], [a for _, a, _ in used])
    except GhostError as e:
        if type(e) is GhostError:
            raise UnsupportedOperation(str(e)) from None
        raise
    # a null in a column whose weight rounded to 0 still makes the score null
    nulls = df.select(pl.any_horizontal([pl.col(c).is_null() for c in ws])).to_series()
    if rows.rows == 0:
        return pl.Series("score", [None] * df.height, dtype=pl.Float64)
    descriptor = _protocol.score(
        first["dataset_id"],
        base64.b64encode(rows.rid_set()).decode(),
        [{"column_id": m["column_id"], "epoch": m["epoch"], "weight": a} for _, a, m in used],
        bits,
    )
    keys: bytes = session.answer_keys([descriptor])[0]["keys"]
    out = rows.open("score", keys, bits)
    return pl.select(pl.when(nulls).then(None).otherwise(out)).to_series()
