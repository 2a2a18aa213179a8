"""The ``ghost`` namespaces on ``pl.Expr``, ``pl.DataFrame`` and ``pl.LazyFrame``.

Each expression is a thin wrapper over one Rust kernel of the ``_internal`` plugin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl
from polars.plugins import register_plugin_function

from ghostpii.client import Session
from ghostpii.dtypes import SealedType
from ghostpii.reveal import reveal

__all__ = ["GhostExpr", "GhostFrame", "GhostLazyFrame"]

PLUGIN_PATH = Path(__file__).parent


def _aggregate(function_name: str, expr: pl.Expr) -> pl.Expr:
    return register_plugin_function(
        plugin_path=PLUGIN_PATH,
        function_name=function_name,
        args=expr,
        returns_scalar=True,
        is_elementwise=False,
    )


@pl.api.register_expr_namespace("ghost")
class GhostExpr:
    """Computations over encrypted columns: ``pl.col("income").ghost.sum()``."""

    def __init__(self, expr: pl.Expr) -> None:
        self._expr = expr

    def sum(self) -> pl.Expr:
        """Sealed sum of the non-null values (Int64 for integers, Float64 for fixed point)."""
        return _aggregate("ghost_sum", self._expr).ext.to(SealedType())

    def mean(self) -> pl.Expr:
        """Sealed mean of the non-null values (Float64; dates give a Datetime)."""
        return _aggregate("ghost_mean", self._expr).ext.to(SealedType())

    def count(self) -> pl.Expr:
        """Number of non-null values (UInt32, public: null positions are not encrypted)."""
        return _aggregate("ghost_count", self._expr)

    def decrypt(self) -> pl.Expr:
        """Mark each row for decryption; ``reveal`` opens them with per-row keys (needs a decrypt grant)."""
        return register_plugin_function(
            plugin_path=PLUGIN_PATH,
            function_name="ghost_decrypt",
            args=self._expr,
            is_elementwise=True,
        )


@pl.api.register_dataframe_namespace("ghost")
class GhostFrame:
    """``df.ghost.reveal(session)``: open every sealed value with one keyhost request."""

    def __init__(self, df: pl.DataFrame) -> None:
        self._df = df

    def reveal(self, session: Session) -> pl.DataFrame:
        """Reveal every sealed column (all groups, all columns) in ONE answer-key request."""
        return reveal(self._df, session)


@pl.api.register_lazyframe_namespace("ghost")
class GhostLazyFrame:
    """``lf.ghost.collect(session)``: collect, then reveal in one keyhost request."""

    def __init__(self, lf: pl.LazyFrame) -> None:
        self._lf = lf

    def collect(self, session: Session, *, engine: Literal["auto", "in-memory", "streaming"] = "auto") -> pl.DataFrame:
        """Collect the query and reveal its sealed values (at most one keyhost round trip here)."""
        return reveal(self._lf.collect(engine=engine), session)
