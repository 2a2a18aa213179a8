"""``gp.ml.LinearRegression``: least squares (or ridge) from ONE revealed Gram matrix."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Self

import polars as pl

from ghostpii.client import Session
from ghostpii.errors import FitError
from ghostpii.gram import GramMatrix
from ghostpii.ml._base import FitInfo, LinearPredictor
from ghostpii.ml._solve import adassp, centered_system, solve, uncentered_system
from ghostpii.ml._stats import Feature

__all__ = ["LinearRegression"]


def _scales(g: GramMatrix, idx: Sequence[int]) -> list[float]:
    """Public scale of each column for AdaSSP's normalisation: the declared bound of encrypted
    features, the root mean square of plaintext ones (1 for the intercept)."""
    out = []
    for i in idx:
        if i == g.intercept:
            out.append(1.0)
            continue
        b = g.bounds[i]
        if b is not None and max(abs(b[0]), abs(b[1])) > 0:
            out.append(max(abs(b[0]), abs(b[1])))
        else:
            out.append(math.sqrt(max(g.value(i, i), 1e-300) / max(g.n, 1)) or 1.0)
    return out


class LinearRegression(LinearPredictor):
    """Ordinary least squares (``alpha=0``) or ridge regression fitted over ciphertext.

    ``fit`` reveals ONE Gram matrix ``[X y 1]ᵀ[X y 1]`` (without ``Σy²``) under a moments
    grant: exact grants give the least-squares coefficients of the fixed-point values; DP
    grants give AdaSSP (a noisy Gram matrix, a data-adaptive ridge; never NaN). The penalty
    ``alpha·‖coef‖²`` leaves the intercept out, like scikit-learn's ``Ridge``.
    """

    def __init__(self, alpha: float = 0.0, fit_intercept: bool = True) -> None:
        super().__init__(alpha, fit_intercept)

    def fit(
        self,
        data: pl.LazyFrame | pl.DataFrame,
        features: Sequence[Feature],
        target: Feature,
        session: Session,
    ) -> Self:
        """Fit on the rows of ``data`` where no feature and not the target is null (at most 2
        keyhost round trips). ``features``: encrypted columns, plaintext columns, or
        expressions (e.g. ``pl.col("age").ghost.gt(50).alias("over_50")``)."""
        self._fit(data, features, target, session)
        return self

    def _from_gram(self, g: GramMatrix, names: list[str]) -> None:
        p = len(names)
        t, c = p, g.intercept
        if g.n <= p + int(self.fit_intercept) and self.alpha == 0 and g.dp is None:
            raise FitError(f"{g.n} rows cannot determine {p + int(self.fit_intercept)} coefficients; use more rows")
        lam = 0.0
        if g.dp is not None:
            idx = list(range(p)) + ([c] if self.fit_intercept else [])
            a, b = uncentered_system(g, idx, t)
            scale = _scales(g, idx)
            sigma = max(
                (
                    g.noise.get((min(i, j), max(i, j)), 0.0) / (scale[x] * scale[y])
                    for x, i in enumerate(idx)
                    for y, j in enumerate(idx)
                ),
                default=0.0,
            )
            w, lam = adassp(a, b, scale, sigma, self.alpha)
            coef, intercept = w[:p], (w[p] if self.fit_intercept else 0.0)
        elif self.fit_intercept:
            xx, xy, means, ymean = centered_system(g, p, t)
            coef = solve(xx, xy, names, self.alpha)
            intercept = ymean - sum(w * m for w, m in zip(coef, means, strict=True))
        else:
            a, b = uncentered_system(g, list(range(p)), t)
            coef = solve(a, b, names, self.alpha)
            intercept = 0.0
        self.coef_ = tuple(coef)
        self.intercept_ = float(intercept)
        self.feature_names_in_ = tuple(names)
        self.n_rows_ = g.n
        self.n_rows_dropped_ = g.rows_in - g.n
        self.ridge_ = lam
        self.fit_info_ = FitInfo(g, g.dp)

    def predict(self, frame: pl.DataFrame | pl.LazyFrame, session: Session | None = None) -> pl.Series:
        """Predictions for a frame with the feature columns (by name): plaintext, or encrypted
        columns scored under a ``score`` grant with ``session`` (see ``decision_function``)."""
        return self.decision_function(frame, session)
