"""The sufficient statistics of a fit: ONE sealed Gram matrix of the features and the target,
revealed with ONE descriptor (after at most one token request for derived features)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from ghostpii.client import Session
from ghostpii.errors import FitError, ghost_errors
from ghostpii.gram import GramMatrix, combine, decode, descriptor
from ghostpii.moments import moment_expr
from ghostpii.plan_guard import check_plan
from ghostpii.tokens import prefetch

__all__ = ["Combination", "Feature", "combination", "feature_names", "fit_statistics"]


@dataclass(frozen=True)
class Combination:
    """A feature ``Σ w·column`` of encrypted columns with public integer weights (as
    ``gp.linear_sum``), fitted from the Gram matrix of its columns (exact)."""

    weights: Mapping[str, int]
    name: str


def combination(weights: Mapping[str, int], name: str) -> Combination:
    """The feature ``Σ w·column`` (e.g. ``{"income": 1, "tax": -1}``) named ``name``; its columns
    need one products group and the same decimals."""
    if not weights:
        raise ValueError("a combination needs at least one column")
    for c, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, int):
            raise TypeError(f"weight of {c!r} must be an int, got {w!r}")
    return Combination(dict(weights), name)


Feature = str | pl.Expr | Combination


def _expr(f: str | pl.Expr) -> pl.Expr:
    return pl.col(f) if isinstance(f, str) else f


def feature_names(features: Sequence[Feature]) -> list[str]:
    """Output names of the features (refusing duplicates: each is one coefficient)."""
    names = []
    for f in features:
        if isinstance(f, Combination):
            names.append(f.name)
            continue
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
    # inputs of the kernel: every column once; each feature a combination of inputs
    inputs: list[tuple[pl.Expr, str]] = []
    maps: list[dict[int, int]] = []

    def index(e: pl.Expr, n: str) -> int:
        for k, (_, m) in enumerate(inputs):
            if m == n:
                return k
        inputs.append((e.alias(n), n))
        return len(inputs) - 1

    for f, n in zip(columns, names, strict=True):
        if isinstance(f, Combination):
            maps.append({index(pl.col(c), c): w for c, w in f.weights.items()})
        else:
            maps.append({index(_expr(f), n): 1})
    d = len(inputs)
    t = next(iter(maps[-1]))
    square = target_square or any(t in m for m in maps[:-1])
    pairs = [(i, j) for i in range(d + 1) for j in range(i, d + 1) if square or not i == j == t]
    sel = lf.select(moment_expr("gram", [e for e, _ in inputs], pairs))
    with ghost_errors():
        check_plan(sel)
        prefetch(sel, session)
        df = sel.collect()
    raw = df.to_series(0).ext.storage().struct.field("params")[0]  # format 2: the Gram in `params`
    payload = json.loads(raw)
    if int(payload["n"]) == 0:
        raise FitError(f"no row has all of {names} non-null: nothing to fit")
    desc, order = descriptor([payload])
    with ghost_errors():
        result = session.answer_keys([desc])[0]
    g = decode(payload, order, result)
    if any(isinstance(f, Combination) for f in columns):
        try:
            g = combine(g, maps, names)
        except ValueError as e:
            raise FitError(str(e)) from None
    return g
