"""Grants: ``gp.allow.decrypt("col")``, ``gp.allow.aggregate("col", min_rows=10, epsilon=1.0)``,
``gp.allow.compare("dob", constants=[...])``.

Each function returns an :class:`Allow`, passed to ``Session.grant``. The keyhost validates the
parameters again and refuses any it does not enforce.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Allow", "aggregate", "compare", "decrypt", "group", "link", "match"]


@dataclass(frozen=True)
class Allow:
    """One permission to ask the keyhost for a kind of answer key on one column."""

    operation: str
    column: str
    params: dict[str, Any] = field(default_factory=dict)


def decrypt(column: str) -> Allow:
    """Allow per-row decryption of ``column`` (reveals its values)."""
    return Allow("decrypt", column)


def aggregate(
    column: str,
    *,
    min_rows: int | None = None,
    epsilon: float | None = None,
    delta: float | None = None,
    budget: float | None = None,
) -> Allow:
    """Allow sums and means of ``column`` over at least ``min_rows`` rows.

    With ``epsilon`` every sum is answered with differential privacy: the keyhost adds
    discrete Laplace noise (ε-DP), or discrete Gaussian noise when ``delta`` is given
    (accounted in zCDP), calibrated to the column's declared bounds. ``budget`` caps the total
    privacy loss of the identity on the dataset (in ε). Without ``epsilon``, ``min_rows`` also
    refuses a sum whose row set differs from one already answered by fewer than ``min_rows``
    rows. See ``docs/privacy.md``.
    """
    if min_rows is not None and min_rows < 1:
        raise ValueError("min_rows must be at least 1")
    if epsilon is not None and not epsilon > 0:
        raise ValueError("epsilon must be positive")
    if delta is not None and epsilon is None:
        raise ValueError("delta needs epsilon")
    if delta is not None and not 0 < delta < 0.5:
        raise ValueError("delta must be in (0, 0.5)")
    if budget is not None and epsilon is None:
        raise ValueError("budget needs epsilon")
    if budget is not None and not budget > 0:
        raise ValueError("budget must be positive")
    params: dict[str, Any] = {"min_rows": min_rows}
    for k, v in (("epsilon", epsilon), ("delta", delta), ("budget", budget)):
        if v is not None:
            params[k] = float(v)
    return Allow("aggregate", column, params)


def _logical(v: Any) -> Any:
    """A constant as the keyhost reads it: ISO strings for dates and datetimes, numbers as is."""
    if isinstance(v, _dt.datetime):
        return v.isoformat()
    if isinstance(v, _dt.date):
        return v.isoformat()
    if isinstance(v, bool | int | float):
        return v
    raise TypeError(f"comparison constants must be numbers, dates or datetimes, not {type(v).__name__}: {v!r}")


def compare(
    column: str,
    *,
    constants: Sequence[Any] | None = None,
    range: tuple[Any, Any] | Sequence[Any] | None = None,  # noqa: A002 - the public name
    max_constants: int | None = None,
) -> Allow:
    """Allow comparison tokens for ``column`` (encrypted with ``compare=True``).

    ``constants`` limits the tokens to these values, ``range=(lo, hi)`` (inclusive) to values in
    between; both are in the column's own terms (numbers, ``datetime.date``, ``datetime.datetime``).
    ``max_constants`` caps how many distinct constants the identity may ever compare the column
    with. Each token reveals the order of every row against its constant.
    """
    if max_constants is not None and max_constants < 1:
        raise ValueError("max_constants must be at least 1")
    if constants is not None and isinstance(constants, str | bytes):
        raise TypeError("constants must be a list of values, not a string")
    params: dict[str, Any] = {
        "constants": None if constants is None else [_logical(c) for c in constants],
        "range": None,
        "max_constants": max_constants,
    }
    if range is not None:
        bounds = list(range)
        if len(bounds) != 2:
            raise ValueError("range must be a pair (lo, hi)")
        params["range"] = [_logical(bounds[0]), _logical(bounds[1])]
    return Allow("compare", column, params)


def _match_constant(v: Any) -> Any:
    """A match constant as the keyhost reads it: text as is, dates as ISO strings, integers."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool) or not isinstance(v, int | _dt.date):
        raise TypeError(f"match constants must be text, integers or dates, not {type(v).__name__}: {v!r}")
    return v.isoformat() if isinstance(v, _dt.date) else v


def match(column: str, *, constants: Sequence[Any] | None = None, max_constants: int | None = None) -> Allow:
    """Allow match tokens for ``column`` (encrypted with ``match=True``): ``ghost.eq`` / ``ghost.is_in``.

    ``constants`` limits the tokens to these values (text, integers or ``datetime.date``, as the
    column holds them); ``max_constants`` caps how many distinct constants the identity may ever
    match the column against. Each token reveals which rows equal its constant.
    """
    if max_constants is not None and (isinstance(max_constants, bool) or max_constants < 1):
        raise ValueError("max_constants must be at least 1")
    if constants is not None and isinstance(constants, str | bytes):
        raise TypeError("constants must be a list of values, not a string")
    params: dict[str, Any] = {
        "constants": None if constants is None else [_match_constant(c) for c in constants],
        "max_constants": max_constants,
    }
    return Allow("match", column, params)


def group(column: str) -> Allow:
    """Allow ``ghost.key()`` pseudonyms of ``column`` (encrypted with ``group=True``): group_by,
    joins and n_unique. Reveals the equality pattern of the rows a query keys."""
    return Allow("group", column)


def link(column: str) -> Allow:
    """Allow ``gp.link`` on ``column`` (encrypted with ``fuzzy=True``): the keyhost hands out the
    seeds that unseal the rows' Bloom-filter encodings, hence their approximate similarity."""
    return Allow("link", column)
