"""What fitted models share: the names, counts and the linear predictor on plaintext frames."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ghostpii.client import Session
from ghostpii.dtypes import is_encrypted
from ghostpii.errors import FitError
from ghostpii.gram import GramMatrix
from ghostpii.ml._stats import Feature, feature_names, fit_statistics

__all__ = ["FitInfo", "LinearPredictor"]


@dataclass
class FitInfo:
    """What a fit revealed: the Gram matrix (``statistics``) and its privacy terms."""

    statistics: GramMatrix
    dp: dict[str, object] | None


class LinearPredictor:
    """``x·coef_ + intercept_`` on a plaintext frame holding the features by name."""

    coef_: tuple[float, ...]
    intercept_: float
    feature_names_in_: tuple[str, ...]
    n_rows_: int
    #: rows left out because a feature or the target was null
    n_rows_dropped_: int
    #: ridge actually used by a DP fit (AdaSSP), 0 for exact fits
    ridge_: float
    fit_info_: FitInfo | None

    alpha: float
    fit_intercept: bool

    def __init__(self, alpha: float, fit_intercept: bool) -> None:
        if not alpha >= 0:
            raise ValueError("alpha must be >= 0")
        self.alpha = float(alpha)
        self.fit_intercept = bool(fit_intercept)
        self.coef_ = None  # type: ignore[assignment]
        self.fit_info_ = None

    def _from_gram(self, g: GramMatrix, names: list[str]) -> None:
        raise NotImplementedError

    def _fit(
        self, data: pl.LazyFrame | pl.DataFrame, features: Sequence[Feature], target: Feature, session: Session
    ) -> None:
        """Reveal the one Gram matrix of features + target (≤ 2 keyhost round trips) and solve."""
        if not features:
            raise FitError("fit needs at least one feature")
        names = feature_names([*features, target])
        g = fit_statistics(data, [*features, target], session)
        self._from_gram(g, names[:-1])

    def _check_fitted(self) -> None:
        if getattr(self, "coef_", None) is None:
            raise FitError(f"this {type(self).__name__} is not fitted yet: call fit(...) first")

    @property
    def weights(self) -> dict[str, float]:
        """The coefficients by feature name (with ``"intercept"``)."""
        self._check_fitted()
        return {**dict(zip(self.feature_names_in_, self.coef_, strict=True)), "intercept": self.intercept_}

    def decision_function(self, frame: pl.DataFrame | pl.LazyFrame, session: Session | None = None) -> pl.Series:
        """``x·coef_ + intercept_`` per row (Float64).

        On a plaintext frame it is computed locally in Polars. When some feature columns are
        encrypted, the rows are scored with ``gp.score`` under ``score`` grants (``session``
        needed): per row only ``x·coef_`` is revealed, in ONE keyhost request.
        """
        self._check_fitted()
        schema = frame.collect_schema()
        missing = [n for n in self.feature_names_in_ if n not in schema.names()]
        if missing:
            raise FitError(
                f"the frame lacks the feature column(s) {missing}; predict takes a frame with columns "
                f"{list(self.feature_names_in_)} (derived features must be computed into columns of those names)"
            )
        if any(is_encrypted(schema[n]) for n in self.feature_names_in_):
            if session is None:
                raise FitError(
                    "some feature columns are encrypted: pass session=... to score the rows under a score grant "
                    "(gp.allow.score), or predict on plaintext"
                )
            from ghostpii.scoring import score

            weights = dict(zip(self.feature_names_in_, self.coef_, strict=True))
            return score(frame, weights, intercept=self.intercept_, session=session).alias("prediction")
        expr = pl.lit(self.intercept_, dtype=pl.Float64)
        for n, w in zip(self.feature_names_in_, self.coef_, strict=True):
            expr = expr + pl.col(n).cast(pl.Float64) * w
        out = frame.lazy().select(expr.alias("prediction")).collect()
        return out.to_series(0)
