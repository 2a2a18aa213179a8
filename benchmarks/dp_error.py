"""DP error against ε through the real DP sum path: a keyhost, DP aggregate grants, sealed sums.

For each ε an analyst with an ``aggregate(epsilon=ε)`` grant reveals the sums of ``groups``
disjoint groups of rows in one request (distinct row sets, so each answer has its own noise);
the errors are ``|noisy − exact|`` against the plaintext sums.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

import ghostpii as gp

BOUND = 100  # values in [0, BOUND]; the sensitivity of a sum of one row is at most BOUND


def measure(
    url: str, admin: gp.Session, epsilons: list[float], groups: int = 30, rows_per_group: int = 50, seed: int = 11
) -> dict[float, list[float]]:
    rng = np.random.default_rng(seed)
    n = groups * rows_per_group
    plain = pl.DataFrame({"g": np.repeat(np.arange(groups), rows_per_group), "x": rng.integers(0, BOUND + 1, n)})
    exact = plain.group_by("g").agg(pl.col("x").sum()).sort("g")
    ds = admin.create_dataset(f"dp_error_{rng.integers(1 << 40)}")
    enc = gp.encrypt(plain, ds, {"x": gp.integer(bounds=(0, BOUND))}, show_progress=False)
    out: dict[float, list[float]] = {}
    for i, eps in enumerate(epsilons):
        token = admin.grant(f"dp_{ds.name}_{i}", ds, [gp.allow.aggregate("x", epsilon=eps, budget=eps * groups + 1)])
        assert token is not None
        an = gp.connect(url, token)
        noisy: Any = enc.group_by("g").agg(pl.col("x").ghost.sum()).sort("g").ghost.reveal(an)
        out[eps] = [abs(float(a) - float(b)) for a, b in zip(noisy["x"], exact["x"], strict=True)]
    return out
