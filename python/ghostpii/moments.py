"""Second moments over ciphertext: variance, standard deviation, covariance, correlation, dot
product, magnitude and cosine similarity of encrypted columns (the ``deg2`` facet).

Each is a sealed value revealed from the Gram matrix of its columns; every statistic of one
query over the same rows is revealed with ONE answer-key descriptor. Needs a
``gp.allow.moments([...])`` grant on the columns and their encryption with
``products=[(...)]``. Rows where any input is null are left out (like ``pl.cov``/``pl.corr``
on complete pairs)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
from polars.plugins import register_plugin_function

from ghostpii._plugin import PLUGIN_PATH
from ghostpii.dtypes import SealedType

__all__ = ["corr", "cosine_similarity", "cov", "gram", "moment_expr"]

IntoExpr = pl.Expr | str


def _expr(e: IntoExpr) -> pl.Expr:
    return pl.col(e) if isinstance(e, str) else e


def _name(e: pl.Expr) -> str:
    try:
        return e.meta.output_name()
    except pl.exceptions.ComputeError:
        return str(e)


def moment_expr(
    stat: str,
    inputs: Sequence[IntoExpr],
    pairs: Sequence[tuple[int, int]] | None = None,
    *,
    float_decimals: int = 6,
) -> pl.Expr:
    """Sealed Gram matrix of ``inputs`` (entries ``pairs``, index ``len(inputs)`` = intercept;
    all when ``None``), revealed as statistic ``stat``."""
    exprs = [_expr(e) for e in inputs]
    kwargs: dict[str, object] = {
        "stat": stat,
        "names": [_name(e) for e in exprs],
        "float_decimals": float_decimals,
    }
    if pairs is not None:
        kwargs["pairs"] = [list(p) for p in pairs]
    out = register_plugin_function(
        plugin_path=PLUGIN_PATH,
        function_name="ghost_moments",
        args=exprs,
        kwargs=kwargs,
        returns_scalar=True,
        is_elementwise=False,
    )
    return out.ext.to(SealedType())


def var(expr: IntoExpr) -> pl.Expr:
    """Sealed sample variance (ddof=1) of an encrypted column."""
    return moment_expr("var", [expr], [(0, 0), (0, 1)])


def std(expr: IntoExpr) -> pl.Expr:
    """Sealed sample standard deviation (ddof=1) of an encrypted column."""
    return moment_expr("std", [expr], [(0, 0), (0, 1)])


def cov(a: IntoExpr, b: IntoExpr) -> pl.Expr:
    """Sealed sample covariance (ddof=1) of two encrypted columns, like ``pl.cov``."""
    return moment_expr("cov", [a, b], [(0, 1), (0, 2), (1, 2)])


def corr(a: IntoExpr, b: IntoExpr) -> pl.Expr:
    """Sealed Pearson correlation of two encrypted columns, like ``pl.corr``."""
    return moment_expr("corr", [a, b], [(0, 0), (0, 1), (1, 1), (0, 2), (1, 2)])


def dot(a: IntoExpr, b: IntoExpr) -> pl.Expr:
    """Sealed dot product ``Σ a·b`` of two encrypted columns (or one and a plaintext column)."""
    return moment_expr("dot", [a, b], [(0, 1)])


def norm(a: IntoExpr) -> pl.Expr:
    """Sealed magnitude (Euclidean norm) ``√Σ a²`` of an encrypted column."""
    return moment_expr("norm", [a], [(0, 0)])


def cosine_similarity(a: IntoExpr, b: IntoExpr) -> pl.Expr:
    """Sealed cosine similarity ``Σab / √(Σa² Σb²)`` of two encrypted columns."""
    return moment_expr("cosine", [a, b], [(0, 0), (0, 1), (1, 1)])


def gram(inputs: Sequence[IntoExpr]) -> pl.Expr:
    """The whole sealed Gram matrix ``[X 1]ᵀ[X 1]`` of ``inputs`` (used by ``gp.ml``)."""
    return moment_expr("gram", inputs)
