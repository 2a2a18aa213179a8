"""Model fits over ciphertext from revealed second moments: ``gp.ml.LinearRegression`` (exact
least squares / ridge; AdaSSP under DP grants) and ``gp.ml.LogisticRegression`` (approximate,
PASS-GLM). Each fit reveals ONE Gram matrix; see ``docs/models.md``."""

from __future__ import annotations

import polars as pl

from ghostpii.ml._stats import Combination, combination
from ghostpii.ml.linear import LinearRegression
from ghostpii.ml.logistic import LogisticRegression

__all__ = ["Combination", "LinearRegression", "LogisticRegression", "combination", "one_hot"]


def one_hot(bucket: pl.Expr, levels: int, *, name: str, drop_first: bool = True) -> list[pl.Expr]:
    """One-hot features of a bucket index (e.g. ``pl.col("age").ghost.bucketize([30, 50])``):
    ``name_k`` = 1 where the bucket is ``k``. ``drop_first`` leaves level 0 out (with an
    intercept all levels together would be collinear)."""
    if levels < 2:
        raise ValueError("one_hot needs at least 2 levels")
    start = 1 if drop_first else 0
    return [(bucket == k).cast(pl.Int8).alias(f"{name}_{k}") for k in range(start, levels)]
