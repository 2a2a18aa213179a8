"""The sufficient statistics of a fit: ONE sealed Gram matrix of the features and the target,
revealed with ONE descriptor (after at most one token request for derived features)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import polars as pl

from ghostpii.client import Session
from ghostpii.errors import FitError, ghost_errors
from ghostpii.gram import GramMatrix, decode, descriptor
from ghostpii.moments import moment_expr
from ghostpii.plan_guard import check_plan
from ghostpii.tokens import prefetch

__all__ = ["Feature", "feature_names", "fit_statistics"]

Feature = str | pl.Expr


def _expr(f: Feature) -> pl.Expr:
    return pl.col(f) if isinstance(f, str) else f


def feature_names(features: Sequence[Feature]) -> list[str]:
    """Output names of the features (refusing duplicates: each is one coefficient)."""
    names = []
    for f in features:
        try:
            names.append(_expr(f).meta.output_name())
        except pl.exceptions.ComputeError as e:
            raise FitError(f"feature {f!r} has no output name; give it one with .alias(...)") from e
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise FitError(f"features {dup} appear more than once; alias derived features with distinct names")
    return names


def fit_statistics(
    data: pl.LazyFrame | pl.DataFrame,
    columns: Sequence[Feature],
    session: Session,
    *,
    target_square: bool = False,
) -> GramMatrix:
    """Reveal the Gram matrix of ``columns`` (features then target, intercept implied) over the
    rows where none is null: entries (i, j) for all pairs except the target's square unless
    ``target_square``. At most 2 keyhost round trips."""
    lf = data.lazy() if isinstance(data, pl.DataFrame) else data
    if not isinstance(lf, pl.LazyFrame):
        raise TypeError(f"fit takes a polars LazyFrame or DataFrame, got {type(data).__name__}")
    names = feature_names(columns)
    d = len(columns)
    t = d - 1
    pairs = [(i, j) for i in range(d + 1) for j in range(i, d + 1) if target_square or not i == j == t]
    sel = lf.select(moment_expr("gram", [_expr(c).alias(n) for c, n in zip(columns, names, strict=True)], pairs))
    with ghost_errors():
        check_plan(sel)
        prefetch(sel, session)
        df = sel.collect()
    raw = df.to_series(0).ext.storage().struct.field("payload")[0]
    payload = json.loads(raw)
    if int(payload["n"]) == 0:
        raise FitError(f"no row has all of {names} non-null: nothing to fit")
    desc, order = descriptor([payload])
    with ghost_errors():
        result = session.answer_keys([desc])[0]
    return decode(payload, order, result)
