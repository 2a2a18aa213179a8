"""Solving the revealed normal equations (in Rust, smartcore): exact least squares / ridge from
an exact Gram matrix, AdaSSP ridge from a DP-perturbed one. No row is ever seen here."""

from __future__ import annotations

import math

from ghostpii import _internal
from ghostpii.errors import FitError, GhostError
from ghostpii.gram import GramMatrix

__all__ = ["adassp", "centered_system", "solve", "uncentered_system"]

Matrix = list[list[float]]


def centered_system(g: GramMatrix, p: int, t: int) -> tuple[Matrix, list[float], list[float], float]:
    """``XcᵀXc``, ``Xcᵀyc`` (centered, exact up to one rounding per entry), the feature means and
    the target mean."""
    n = g.n
    c = g.intercept
    xx = [[g.centered(i, j) for j in range(p)] for i in range(p)]
    xy = [g.centered(i, t) for i in range(p)]
    means = [g.value(i, c) / n for i in range(p)]
    return xx, xy, means, g.value(t, c) / n


def uncentered_system(g: GramMatrix, idx: list[int], t: int) -> tuple[Matrix, list[float]]:
    """``ZᵀZ`` and ``Zᵀy`` over the columns ``idx`` (the intercept index for the ones)."""
    return [[g.value(i, j) for j in idx] for i in idx], [g.value(i, t) for i in idx]


def solve(a: Matrix, b: list[float], names: list[str], alpha: float) -> list[float]:
    """Solve ``(a + alpha·I) w = b`` after scaling to unit diagonal (conditioning); a singular
    system raises :class:`FitError` naming what to do."""
    p = len(b)
    for i in range(p):
        if a[i][i] <= 0 and alpha <= 0:
            raise FitError(
                f"feature {names[i]!r} is constant over the rows fitted (no variance), so its coefficient is "
                f"not determined; drop it, or pass alpha > 0 (ridge)"
            )
    d = [math.sqrt(a[i][i] + alpha) if a[i][i] + alpha > 0 else 1.0 for i in range(p)]
    m = [[(a[i][j] + (alpha if i == j else 0.0)) / (d[i] * d[j]) for j in range(p)] for i in range(p)]
    r = [b[i] / d[i] for i in range(p)]
    try:
        z = _internal.solve_spd(m, r)
    except GhostError as e:
        raise FitError(
            f"the features {names} are collinear over the rows fitted ({e}); drop a redundant feature (e.g. one "
            f"level of a one-hot encoding) or pass alpha > 0 (ridge)"
        ) from None
    return [z[i] / d[i] for i in range(p)]


def adassp(
    a: Matrix, b: list[float], scale: list[float], sigma: float, alpha: float, rho: float = 0.05
) -> tuple[list[float], float]:
    """AdaSSP (Wang 2018) on a DP-perturbed system: normalise by the public ``scale`` of each
    column, choose the ridge λ from the noisy matrix (``adassp_lambda``, post-processing), floor
    the eigenvalues if the matrix is still not positive definite, solve. Never NaN."""
    p = len(b)
    m = [[a[i][j] / (scale[i] * scale[j]) for j in range(p)] for i in range(p)]
    r = [b[i] / scale[i] for i in range(p)]
    lam = _internal.adassp_lambda(m, sigma, rho)
    for i in range(p):
        m[i][i] += lam + alpha / scale[i] ** 2
    try:
        z = _internal.solve_spd(m, r)
    except GhostError:
        ev = _internal.eigenvalues(m)
        floor = max(abs(ev[-1]), 1.0) * 1e-6
        z = _internal.solve_spd(_internal.eigen_floor(m, floor), r)
    return [z[i] / scale[i] for i in range(p)], lam
