"""``gp.ml.LogisticRegression``: an APPROXIMATE logistic regression from the same second
moments (PASS-GLM, Huggins et al. 2017): the log-likelihood ``−ln(1 + e^{−y·z})`` is replaced by
its degree-2 Chebyshev approximation on ``[−radius, radius]``, whose maximiser depends on the
data only through ``XᵀX`` and ``Xᵀy`` — ONE revealed Gram matrix, no refinement rounds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Self

import polars as pl

from ghostpii import _internal
from ghostpii.client import Session
from ghostpii.errors import FitError, GhostError
from ghostpii.gram import GramMatrix
from ghostpii.ml._base import FitInfo, LinearPredictor
from ghostpii.ml._stats import Feature

__all__ = ["LogisticRegression"]


class LogisticRegression(LinearPredictor):
    """Binary logistic regression (target 0/1 or boolean), approximate (PASS-GLM, quadratic).

    Features are standardised with their revealed means and variances, the quadratic
    approximation is maximised with the penalty ``alpha/2·‖coef‖²`` on the standardised
    coefficients (``alpha = 1/C`` of scikit-learn), and the result is mapped back to the
    original units. Under DP grants the noisy Gram matrix is floored to positive definite.
    """

    def __init__(self, alpha: float = 1.0, fit_intercept: bool = True, radius: float = 4.0) -> None:
        super().__init__(alpha, fit_intercept)
        if not radius > 0:
            raise ValueError("radius must be positive")
        self.radius = float(radius)

    def fit(
        self,
        data: pl.LazyFrame | pl.DataFrame,
        features: Sequence[Feature],
        target: Feature,
        session: Session,
    ) -> Self:
        """Fit on the rows where no feature and not the target is null (≤ 2 keyhost round trips)."""
        self._fit(data, features, target, session)
        return self

    def _from_gram(self, g: GramMatrix, names: list[str]) -> None:
        p, n = len(names), g.n
        t, c = p, g.intercept
        # standardised features x̃ = (x − m)/s; the target y = 2t − 1 ∈ {−1, 1}
        m = [g.value(i, c) / n for i in range(p)]
        var = [max(g.centered(i, i), 0.0) / n for i in range(p)]
        s = []
        for i in range(p):
            if var[i] <= 0:
                if self.alpha <= 0:
                    raise FitError(f"feature {names[i]!r} is constant over the rows fitted; drop it or pass alpha > 0")
                s.append(1.0)
            else:
                s.append(math.sqrt(var[i]))
        sum_t = g.value(t, c)
        sum_y = 2 * sum_t - n
        k = p + int(self.fit_intercept)
        gram = [[0.0] * k for _ in range(k)]
        rhs = [0.0] * k
        for i in range(p):
            for j in range(p):
                gram[i][j] = g.centered(i, j) / (s[i] * s[j])
            rhs[i] = (2 * g.value(i, t) - g.value(i, c) - m[i] * sum_y) / s[i]
        if self.fit_intercept:
            gram[p][p] = float(n)
            rhs[p] = sum_y
        b0, b1, b2 = _internal.pass_glm_coefficients(self.radius)
        a = [[-2.0 * b2 * gram[i][j] + (self.alpha if i == j and i < p else 0.0) for j in range(k)] for i in range(k)]
        r = [b1 * x for x in rhs]
        try:
            beta = _internal.solve_spd(a, r)
        except GhostError:
            if g.dp is None:
                raise FitError(
                    f"the features {names} are collinear over the rows fitted; drop a redundant feature or pass "
                    f"alpha > 0"
                ) from None
            ev = _internal.eigenvalues(a)
            beta = _internal.solve_spd(_internal.eigen_floor(a, max(abs(ev[-1]), 1.0) * 1e-6), r)
        coef = [beta[i] / s[i] for i in range(p)]
        intercept = (beta[p] if self.fit_intercept else 0.0) - sum(beta[i] * m[i] / s[i] for i in range(p))
        self.coef_ = tuple(coef)
        self.intercept_ = float(intercept)
        self.feature_names_in_ = tuple(names)
        self.n_rows_ = n
        self.n_rows_dropped_ = g.rows_in - n
        self.ridge_ = 0.0
        self.fit_info_ = FitInfo(g, g.dp)

    def predict_proba(self, frame: pl.DataFrame | pl.LazyFrame, session: Session | None = None) -> pl.DataFrame:
        """``P(y=0)``, ``P(y=1)`` per row (columns ``0`` and ``1``); encrypted feature columns are
        scored under a ``score`` grant with ``session`` (only ``x·coef_`` per row is revealed)."""
        z = self.decision_function(frame, session)
        p1 = 1.0 / (1.0 + (-z).exp())
        return pl.DataFrame({"0": 1.0 - p1, "1": p1})

    def predict(self, frame: pl.DataFrame | pl.LazyFrame, session: Session | None = None) -> pl.Series:
        """0/1 class per row (``P(y=1) ≥ 0.5``); ``session`` as for :meth:`predict_proba`."""
        return (self.decision_function(frame, session) >= 0.0).cast(pl.Int8).alias("prediction")
