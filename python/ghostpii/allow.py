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

__all__ = [
    "Allow",
    "Allows",
    "aggregate",
    "compare",
    "compute",
    "decrypt",
    "group",
    "link",
    "match",
    "moments",
    "score",
    "search",
]


@dataclass(frozen=True)
class Allow:
    """One permission to ask the keyhost for a kind of answer key on one column."""

    operation: str
    column: str
    params: dict[str, Any] = field(default_factory=dict)
    #: further columns the same grant covers (``moments`` groups)
    also: tuple[str, ...] = ()

    def columns(self) -> tuple[str, ...]:
        """Every column this permission is granted on."""
        return (self.column, *self.also)


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
    privacy loss of the identity on the dataset (in ε). Without ``epsilon`` answers are exact
    and audited: the rows the identity's exact answers tell apart must form groups ("atoms") of
    at least ``min_rows`` rows (at least 2; 2 when ``min_rows`` is not given), whatever the
    weights or multiplicities asked for. See ``docs/privacy.md``.
    """
    if min_rows is not None and min_rows < 1:
        raise ValueError("min_rows must be at least 1")
    if epsilon is None and min_rows == 1:
        raise ValueError("an exact grant (no epsilon) needs min_rows of at least 2")
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


class Allows(tuple[Allow, ...]):
    """Several :class:`Allow` values given as one (e.g. ``gp.allow.score([...])``); ``Session.grant``
    takes it in place of an ``Allow`` or as the whole list."""


def flatten(allows: Any) -> list[Allow]:
    """The :class:`Allow` values of ``allows``, with every :class:`Allows` inside spread out."""
    out: list[Allow] = []
    for a in allows:
        if isinstance(a, Allows):
            out.extend(a)
        elif isinstance(a, Allow):
            out.append(a)
        else:
            raise TypeError(f"grant takes gp.allow.* values, got {a!r}")
    return out


def score(columns: str | Sequence[str], *, max_vectors: int | None = None) -> Allows:
    """Allow per-row scores ``x·w`` over encrypted ``columns`` (``gp.score``): a ``score`` grant on each.

    The analyst learns, for every row it scores, the linear combination of the row's values with
    weights it chooses, never a value itself: the keyhost refuses a weight vector once the vectors
    answered to the identity on the dataset would span a unit vector (which would decrypt a column
    row by row). ``max_vectors`` caps the linearly independent weight vectors ever answered to the
    identity on the dataset (scoring again with a vector already answered, or a combination of
    them, is always allowed). See ``docs/threat-model.md``, "Scores".
    """
    cols = [columns] if isinstance(columns, str) else list(columns)
    if not cols or not all(isinstance(c, str) for c in cols):
        raise TypeError("score takes a column name or a list of column names")
    if max_vectors is not None and (isinstance(max_vectors, bool) or max_vectors < 1):
        raise ValueError("max_vectors must be at least 1")
    params: dict[str, Any] = {} if max_vectors is None else {"max_vectors": int(max_vectors)}
    return Allows(Allow("score", c, dict(params)) for c in dict.fromkeys(cols))


def compute(
    columns: str | Sequence[str],
    *,
    max_evaluations: int,
    ops: Sequence[str] | None = None,
    reveal_values: bool = False,
) -> Allows:
    """Allow row-wise computation over FHE ciphertexts (``gp.compute``) on encrypted ``columns``:
    a ``compute`` grant on each.

    Each evaluation reveals to the analyst one output per row: a predicate (``True``/``False``)
    or, with ``reveal_values=True``, the integer value of the expression. The analyst controls its
    inputs (it could send a shifted cell), so ``max_evaluations`` bounds how many evaluations of
    any circuit each row of each column may take part in: a row leaks at most that many outputs
    (for predicates, bits) about its values. ``ops`` limits the circuit ops (``add sub mul neg abs
    min max pow cmp and or not select``). See ``docs/rowwise.md``.
    """
    cols = [columns] if isinstance(columns, str) else list(columns)
    if not cols or not all(isinstance(c, str) for c in cols):
        raise TypeError("compute takes a column name or a list of column names")
    if isinstance(max_evaluations, bool) or not isinstance(max_evaluations, int) or max_evaluations < 1:
        raise ValueError("max_evaluations must be an integer of at least 1")
    params: dict[str, Any] = {"max_evaluations": int(max_evaluations)}
    if ops is not None:
        params["ops"] = [str(o) for o in ops]
    if reveal_values:
        params["reveal_values"] = True
    return Allows(Allow("compute", c, dict(params)) for c in dict.fromkeys(cols))


def moments(
    columns: Sequence[str],
    *,
    min_rows: int | None = None,
    epsilon: float | None = None,
    delta: float | None = None,
    budget: float | None = None,
) -> Allow:
    """Allow second moments among ``columns``: sums, squares and products (the ``deg2`` facet
    of ``gp.encrypt(..., products=[...])``), hence ``ghost.var/std/dot``, ``gp.cov/corr`` and
    ``gp.ml`` fits, each revealed from ONE Gram matrix per query.

    ``min_rows``, ``epsilon``, ``delta`` and ``budget`` mean what they mean for
    :func:`aggregate`; with ``epsilon`` the keyhost perturbs the whole Gram matrix once per
    query (each entry with its share of ε, or of ρ with ``delta``) and charges the budget once.
    Without ``epsilon`` every entry is an exact sum under the disclosure rule (all entries of a
    query together; a plaintext feature's distinct values count as groups of rows).
    """
    if isinstance(columns, str) or not columns:
        raise ValueError("moments takes a non-empty list of column names")
    base = aggregate(columns[0], min_rows=min_rows, epsilon=epsilon, delta=delta, budget=budget)
    cols = tuple(dict.fromkeys(columns))
    params = {**base.params, "columns": list(cols)}
    return Allow("moments", cols[0], params, cols[1:])


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


def search(column: str, *, max_constants: int | None = None) -> Allow:
    """Allow search tokens for ``column`` (encrypted with ``gp.text(prefix=..., suffix=...,
    substring=...)``): ``ghost.starts_with`` / ``ghost.ends_with`` / ``ghost.contains``.

    ``max_constants`` caps how many distinct (kind, constant) pairs the identity may ever search
    the column for (counted together with the column's match constants). A token reveals which
    rows start with, end with or contain its constant; a substring token also where each q-gram
    of the constant occurs in every row (docs/threat-model.md, "search").
    """
    if max_constants is not None and (isinstance(max_constants, bool) or max_constants < 1):
        raise ValueError("max_constants must be at least 1")
    return Allow("search", column, {"max_constants": max_constants})


def group(column: str, *, domain_key_holder: bool = False) -> Allow:
    """Allow ``ghost.key()`` pseudonyms of ``column`` (encrypted with ``group=True``): group_by,
    joins and n_unique. Reveals the equality pattern of the rows a query keys.

    ``domain_key_holder=True`` is the owner's explicit choice to hand these pads to an identity of
    an organisation that holds the column's join-domain key (the domain's owner or a member):
    that organisation can compute the pseudonym of any value it guesses, so it learns the values
    of the rows whose pads it obtains (a dictionary attack). Without it the keyhost refuses such
    pads (see ``docs/privacy.md``)."""
    return Allow("group", column, {"domain_key_holder": True} if domain_key_holder else {})


def link(column: str, *, domain_key_holder: bool = False, max_constants: int | None = None) -> Allow:
    """Allow ``gp.link`` and ``gp.similarity`` on ``column`` (encrypted with ``fuzzy=True``): the
    keyhost hands out the seeds that unseal the rows' Bloom-filter encodings, hence their
    approximate similarity. ``domain_key_holder`` as for :func:`group`.

    ``max_constants=n`` also allows ``pl.col(column).ghost.similarity(constant)`` for at most
    ``n`` distinct constants ever (counted together with the column's match and search
    constants): the keyhost encodes each constant as it encoded the rows, so each one is a
    probe of every row's similarity to a value of the analyst's choice. Without it the grant
    issues no similarity token (docs/threat-model.md, "fuzzy")."""
    if max_constants is not None and (
        isinstance(max_constants, bool) or not isinstance(max_constants, int) or max_constants < 1
    ):
        raise ValueError("max_constants must be an integer of at least 1")
    params: dict[str, object] = {"domain_key_holder": True} if domain_key_holder else {}
    if max_constants is not None:
        params["max_constants"] = max_constants
    return Allow("link", column, params)
