"""Typed functional forms of the ``ghost`` namespaces (as polars-xdt offers): the same
expressions, visible to type checkers, since ``pl.Expr.ghost`` is registered at run time.

``gp.older_than(pl.col("dob"), 21)`` is ``pl.col("dob").ghost.older_than(21)``;
``gp.collect(lf, session)`` is ``lf.ghost.collect(session)``. Every function takes an
expression or a column name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal

import polars as pl

from ghostpii.client import Session
from ghostpii.constants import Constant
from ghostpii.namespace import ClosedInterval, GhostExpr, GhostLazyFrame, SealedAggExpr
from ghostpii.quantiles import QuantileMethod, SealedQuantileExpr

__all__ = [
    "between",
    "bucketize",
    "collect",
    "count",
    "decrypt",
    "ge",
    "gt",
    "le",
    "lt",
    "mean",
    "median",
    "older_than",
    "quantile",
    "sum",
    "younger_than",
]

IntoExpr = pl.Expr | str


def _g(expr: IntoExpr) -> GhostExpr:
    return GhostExpr(pl.col(expr) if isinstance(expr, str) else expr)


def sum(expr: IntoExpr) -> SealedAggExpr:  # noqa: A001 - mirrors ghost.sum
    """Sealed sum of an encrypted column (``ghost.sum()``)."""
    return _g(expr).sum()


def mean(expr: IntoExpr) -> SealedAggExpr:
    """Sealed mean of an encrypted column (``ghost.mean()``)."""
    return _g(expr).mean()


def quantile(expr: IntoExpr, q: float, interpolation: QuantileMethod = "nearest") -> SealedQuantileExpr:
    """Sealed quantile of an encrypted column with the ``ord`` facet (``ghost.quantile``)."""
    return _g(expr).quantile(q, interpolation)


def median(expr: IntoExpr) -> SealedQuantileExpr:
    """Sealed median of an encrypted column with the ``ord`` facet (``ghost.median``)."""
    return _g(expr).median()


def count(expr: IntoExpr) -> pl.Expr:
    """Number of non-null values of an encrypted column (``ghost.count()``; public)."""
    return _g(expr).count()


def lt(expr: IntoExpr, value: Constant) -> pl.Expr:
    """``x < value`` per row (``ghost.lt``; needs a compare grant)."""
    return _g(expr).lt(value)


def le(expr: IntoExpr, value: Constant) -> pl.Expr:
    """``x <= value`` per row (``ghost.le``)."""
    return _g(expr).le(value)


def gt(expr: IntoExpr, value: Constant) -> pl.Expr:
    """``x > value`` per row (``ghost.gt``)."""
    return _g(expr).gt(value)


def ge(expr: IntoExpr, value: Constant) -> pl.Expr:
    """``x >= value`` per row (``ghost.ge``)."""
    return _g(expr).ge(value)


def between(expr: IntoExpr, lower: Constant, upper: Constant, closed: ClosedInterval = "both") -> pl.Expr:
    """``lower <= x <= upper`` per row (``ghost.between``)."""
    return _g(expr).between(lower, upper, closed)


def older_than(expr: IntoExpr, years: int, as_of: dt.date | dt.datetime | None = None) -> pl.Expr:
    """True where the date is at least ``years`` full years before ``as_of`` (``ghost.older_than``)."""
    return _g(expr).older_than(years, as_of)


def younger_than(expr: IntoExpr, years: int, as_of: dt.date | dt.datetime | None = None) -> pl.Expr:
    """True where fewer than ``years`` full years have passed (``ghost.younger_than``)."""
    return _g(expr).younger_than(years, as_of)


def bucketize(expr: IntoExpr, breaks: Sequence[Constant]) -> pl.Expr:
    """UInt32 bucket index per row (``ghost.bucketize``)."""
    return _g(expr).bucketize(breaks)


def decrypt(expr: IntoExpr) -> pl.Expr:
    """Mark rows for decryption by ``reveal`` (``ghost.decrypt()``; needs a decrypt grant)."""
    return _g(expr).decrypt()


def collect(
    lf: pl.LazyFrame, session: Session, *, engine: Literal["auto", "in-memory", "streaming"] = "auto"
) -> pl.DataFrame:
    """Run a query and reveal its sealed values in at most two keyhost round trips (``lf.ghost.collect``)."""
    return GhostLazyFrame(lf).collect(session, engine=engine)
