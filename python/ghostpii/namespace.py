"""The ``ghost`` namespaces on ``pl.Expr``, ``pl.DataFrame`` and ``pl.LazyFrame``.

Each expression is a thin wrapper over one Rust kernel of the ``_internal`` plugin.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import polars as pl
from polars.plugins import register_plugin_function

from ghostpii import moments
from ghostpii._plugin import PLUGIN_PATH
from ghostpii.client import Session
from ghostpii.constants import Constant, const_spec, cutoff_spec
from ghostpii.dtypes import SealedType, ghost_columns
from ghostpii.errors import UnsupportedOperation, ghost_errors
from ghostpii.keyed import match_spec, normalise, prefers_in_memory
from ghostpii.linkage import LinkError
from ghostpii.plan_guard import check_plan, reveal
from ghostpii.quantiles import QuantileMethod, SealedQuantileExpr, quantile
from ghostpii.tokens import prefetch

ClosedInterval = Literal["both", "left", "right", "none"]

__all__ = ["GhostExpr", "GhostFrame", "GhostLazyFrame", "SealedAggExpr", "linear_sum"]


def _aggregate(function_name: str, expr: pl.Expr) -> pl.Expr:
    return register_plugin_function(
        plugin_path=PLUGIN_PATH,
        function_name=function_name,
        args=expr,
        returns_scalar=True,
        is_elementwise=False,
    )


def _seal_groups(function_name: str, exprs: list[pl.Expr], kwargs: dict[str, Any] | None = None) -> pl.Expr:
    """A sealed aggregate of every group in ONE kernel call: the kernel runs elementwise over
    ``expr.implode()`` (one list of cells per group), so Polars groups natively and no kernel is
    called per group (``src/python/src/grouped.rs``)."""
    return register_plugin_function(
        plugin_path=PLUGIN_PATH,
        function_name=f"{function_name}_groups",
        args=[e.implode() for e in exprs],
        kwargs=kwargs,
        is_elementwise=True,
    )


class SealedAggExpr(pl.Expr):
    """A sealed aggregate. ``.filter(pred)`` filters the rows *before* aggregating, so
    ``pl.col("income").ghost.sum().filter(pl.col("dob").ghost.older_than(65))`` sums per group
    only the matching rows (like ``pl.col("income").filter(...).ghost.sum()``)."""

    _ghost_function: str
    _ghost_input: pl.Expr

    @classmethod
    def _make(cls, function_name: str, expr: pl.Expr) -> SealedAggExpr:
        out = cls._from_pyexpr(_seal_groups(function_name, [expr]).ext.to(SealedType())._pyexpr)
        assert isinstance(out, SealedAggExpr)
        out._ghost_function = function_name
        out._ghost_input = expr
        return out

    def filter(self, *predicates: Any, **constraints: Any) -> SealedAggExpr:
        """Aggregate only the rows where the predicates hold."""
        return SealedAggExpr._make(self._ghost_function, self._ghost_input.filter(*predicates, **constraints))


def linear_sum(weights: Mapping[str, int]) -> pl.Expr:
    """Sealed ``Σ w·column`` with public integer weights, over rows where every column is non-null.

    The columns must be encrypted in the same ``gp.encrypt`` call (same row ids) with the same
    number of decimals. ``gp.linear_sum({"income": 1, "tax": -1})`` is the sum of ``income - tax``.
    Needs an aggregate grant on every column; revealed like ``ghost.sum()``.
    """
    if not weights:
        raise ValueError("linear_sum needs at least one column")
    for c, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, int) or not -(2**63) <= w < 2**63:
            raise TypeError(f"weight of {c!r} must be a 64-bit int, got {w!r}")
    expr = _seal_groups("ghost_linear_sum", [pl.col(c) for c in weights], {"weights": list(weights.values())})
    return expr.ext.to(SealedType())


@pl.api.register_expr_namespace("ghost")
class GhostExpr:
    """Computations over encrypted columns: ``pl.col("income").ghost.sum()``."""

    def __init__(self, expr: pl.Expr) -> None:
        self._expr = expr

    def sum(self) -> SealedAggExpr:
        """Sealed sum of the non-null values (Int64 for integers, Float64 for fixed point)."""
        return SealedAggExpr._make("ghost_sum", self._expr)

    def mean(self) -> SealedAggExpr:
        """Sealed mean of the non-null values (Float64; dates give a Datetime)."""
        return SealedAggExpr._make("ghost_mean", self._expr)

    def count(self) -> pl.Expr:
        """Number of non-null values (UInt32, public: null positions are not encrypted)."""
        return _aggregate("ghost_count", self._expr)

    def quantile(self, quantile_: float, interpolation: QuantileMethod = "nearest") -> SealedQuantileExpr:
        """Sealed quantile of a column with the ``ord`` facet, as Polars' ``quantile`` computes it
        (``interpolation`` as there; Float64 for numbers, Datetime for dates). Revealed by a
        search with comparison tokens (compare grant): see ``ghostpii.quantiles``."""
        return quantile(self._expr, quantile_, interpolation)

    def median(self) -> SealedQuantileExpr:
        """Sealed median (``quantile(0.5, "linear")``, as Polars' ``median``)."""
        return quantile(self._expr, 0.5, "linear")

    # -- second moments (deg2 facet, moments grant; see ghostpii.moments) ------------------
    def var(self) -> pl.Expr:
        """Sealed sample variance (ddof=1, like Polars)."""
        return moments.var(self._expr)

    def std(self) -> pl.Expr:
        """Sealed sample standard deviation (ddof=1, like Polars)."""
        return moments.std(self._expr)

    def dot(self, other: pl.Expr | str) -> pl.Expr:
        """Sealed dot product ``Σ x·other``."""
        return moments.dot(self._expr, other)

    def norm(self) -> pl.Expr:
        """Sealed magnitude ``√Σ x²``."""
        return moments.norm(self._expr)

    def cosine(self, other: pl.Expr | str) -> pl.Expr:
        """Sealed cosine similarity with ``other``."""
        return moments.cosine_similarity(self._expr, other)

    # -- comparisons on the ord facet ------------------------------------------------------
    def _compare(self, op: str, values: list[dict[str, Any]]) -> pl.Expr:
        return register_plugin_function(
            plugin_path=PLUGIN_PATH,
            function_name="ghost_compare",
            args=self._expr,
            kwargs={"op": op, "values": values},
            is_elementwise=True,
        )

    def lt(self, value: Constant) -> pl.Expr:
        """``x < value`` per row (Boolean; null stays null). Needs a compare grant."""
        return self._compare("lt", [const_spec(value)])

    def le(self, value: Constant) -> pl.Expr:
        """``x <= value`` per row."""
        return self._compare("le", [const_spec(value)])

    def gt(self, value: Constant) -> pl.Expr:
        """``x > value`` per row."""
        return self._compare("gt", [const_spec(value)])

    def ge(self, value: Constant) -> pl.Expr:
        """``x >= value`` per row."""
        return self._compare("ge", [const_spec(value)])

    def between(self, lower: Constant, upper: Constant, closed: ClosedInterval = "both") -> pl.Expr:
        """``lower <= x <= upper`` (``closed`` = "both", "left", "right" or "none")."""
        if closed not in ("both", "left", "right", "none"):
            raise ValueError(f"closed must be 'both', 'left', 'right' or 'none', got {closed!r}")
        lo = self.ge(lower) if closed in ("both", "left") else self.gt(lower)
        hi = self.le(upper) if closed in ("both", "right") else self.lt(upper)
        return lo & hi

    def older_than(self, years: int, as_of: dt.date | dt.datetime | None = None) -> pl.Expr:
        """True where the date (of birth) is at least ``years`` full years before ``as_of``.

        Calendar-correct: a Feb 29 birthday counts on Mar 1 in non-leap years. ``as_of``
        defaults to today in UTC. The complement of :meth:`younger_than`.
        """
        return self._compare("le", [cutoff_spec(years, as_of)])

    def younger_than(self, years: int, as_of: dt.date | dt.datetime | None = None) -> pl.Expr:
        """True where fewer than ``years`` full years have passed since the date at ``as_of``."""
        return self._compare("gt", [cutoff_spec(years, as_of)])

    def bucketize(self, breaks: Sequence[Constant]) -> pl.Expr:
        """UInt32 bucket index per row: the number of ``breaks`` (strictly increasing) that are <= x."""
        specs = [const_spec(b) for b in breaks]
        if not specs:
            raise ValueError("bucketize needs at least one break")
        if any(not a < b for a, b in zip(breaks, breaks[1:], strict=False)):  # type: ignore[operator]
            raise ValueError(f"breaks must be strictly increasing, got {list(breaks)!r}")
        return self._compare("bucketize", specs)

    # -- equality and keys on the match / group facets ------------------------------------
    def _match(self, op: str, values: list[dict[str, Any]]) -> pl.Expr:
        return register_plugin_function(
            plugin_path=PLUGIN_PATH,
            function_name="ghost_match",
            args=self._expr,
            kwargs={"op": op, "values": values},
            is_elementwise=True,
        )

    def eq(self, value: str | int | dt.date) -> pl.Expr:
        """``x == value`` per row (Boolean; null rows stay null), on the ``match`` facet.

        Needs a match token for ``value`` (a ``gp.allow.match`` grant); the token reveals which
        rows equal ``value`` and nothing else. Text compares exact UTF-8 (no normalisation).
        """
        return self._match("eq", [match_spec(value)])

    def is_in(self, values: Sequence[str | int | dt.date]) -> pl.Expr:
        """``x in values`` per row: one match token per distinct constant (an empty list is
        false for every non-null row and needs no token)."""
        if isinstance(values, str | bytes) or not isinstance(values, Sequence | set | frozenset):
            raise TypeError(f"is_in takes a list of constants, got {values!r}")
        return self._match("is_in", [match_spec(v) for v in values])

    def _search(self, op: str, constant: str) -> pl.Expr:
        if not isinstance(constant, str):
            raise TypeError(f"ghost.{op} takes a text constant, got {type(constant).__name__}: {constant!r}")
        return register_plugin_function(
            plugin_path=PLUGIN_PATH,
            function_name="ghost_search",
            args=self._expr,
            kwargs={"op": op, "constant": constant},
            is_elementwise=True,
        )

    def starts_with(self, prefix: str) -> pl.Expr:
        """``str.starts_with(prefix)`` per row (Boolean; null rows stay null), on the ``search``
        facet (``gp.text(prefix=(...), substring=q)``): ``prefix`` must have a declared prefix
        length, or at least ``q`` characters. Needs a search token for ``prefix`` (a
        ``gp.allow.search`` grant); the token reveals which rows start with ``prefix`` (through
        q-grams also where each q-gram of it occurs in every row; docs/threat-model.md)."""
        return self._search("starts_with", prefix)

    def ends_with(self, suffix: str) -> pl.Expr:
        """``str.ends_with(suffix)`` per row, on the ``search`` facet: ``suffix`` must have a
        declared suffix length (``gp.text(suffix=(...))``). The token reveals which rows end
        with ``suffix``."""
        return self._search("ends_with", suffix)

    def contains(self, substring: str) -> pl.Expr:
        """``str.contains(substring, literal=True)`` per row, on the ``search`` facet
        (``gp.text(substring=q)``): ``substring`` must have at least ``q`` characters. The token
        holds the q-grams of ``substring``: it reveals which rows contain ``substring`` and, in
        every row, the positions at which each of its q-grams occurs (docs/threat-model.md)."""
        return self._search("contains", substring)

    def similarity(self, constant: str | int | dt.date, *, metric: str = "dice") -> pl.Expr:
        """The similarity (Float64 in [0, 1]; null rows stay null) of each row's ``fuzzy``
        encoding with the encoding of ``constant``, normalised as the column's values were (text:
        NFKC, lower case, trimmed; dates: ISO; integers: decimal): ``metric="dice"``
        (2|A∩B|/(|A|+|B|)) or ``"jaccard"`` of the hardened Bloom filters, an approximation of the
        same measure on the sets of character bigrams (as ``gp.similarity``). Needs a similarity
        token for ``constant`` and the seeds of the rows: a ``gp.allow.link(column,
        max_constants=n)`` grant. What it reveals: docs/threat-model.md ("fuzzy")."""
        if metric not in ("dice", "jaccard"):
            raise LinkError(f"metric must be 'dice' or 'jaccard', got {metric!r}")
        if isinstance(constant, bool) or not isinstance(constant, str | int | dt.date):
            raise TypeError(f"ghost.similarity takes text, an integer or a date, got {constant!r}")
        if isinstance(constant, dt.datetime):
            raise TypeError(f"ghost.similarity takes a date, not a datetime: {constant!r}")
        if isinstance(constant, str):
            text = str(normalise(pl.Series([constant]))[0])
        elif isinstance(constant, dt.date):
            text = constant.isoformat()
        else:
            text = str(constant)
        if not text:
            raise LinkError("ghost.similarity needs a non-empty constant (after normalisation)")
        return register_plugin_function(
            plugin_path=PLUGIN_PATH,
            function_name="ghost_similarity",
            args=self._expr,
            kwargs={"constant": text, "metric": metric},
            is_elementwise=True,
        )

    def key(self) -> pl.Expr:
        """Pseudonymous keys (Int128) of the ``group`` facet, for ``group_by``, joins and
        ``n_unique``: equal values give equal keys within this process, across the columns of
        one join domain; other columns never share keys. The pads of the rows are fetched in
        one keyhost request per evaluation (a ``gp.allow.group`` grant); see docs/privacy.md for
        what the keys reveal and whether they link across queries."""
        return register_plugin_function(
            plugin_path=PLUGIN_PATH,
            function_name="ghost_key",
            args=self._expr,
            # elementwise (Polars requires it of join keys): the in-memory engine hands the kernel
            # the whole column, one pad request; the streaming engine asks once per morsel
            is_elementwise=True,
        )

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

    def _plain_only(self, what: str) -> pl.DataFrame:
        bad = ghost_columns(self._df.schema)
        if bad:
            raise UnsupportedOperation(
                f"{what} cannot hold the encrypted or sealed column(s) {bad}: JSON has no place for their "
                f"extension type, and Polars cannot write binary ciphertext as JSON; write Parquet or IPC "
                f"(df.write_parquet / df.write_ipc) to keep them, reveal sealed values first, or drop them"
            )
        return self._df

    def write_json(self, file: str | Path | None = None) -> str | None:
        """``df.write_json``, refusing encrypted and sealed columns with a clear error (a plain
        ``df.write_json`` on them ends in a Polars panic)."""
        return self._plain_only("write_json").write_json(file)

    def write_ndjson(self, file: str | Path | None = None) -> str | None:
        """``df.write_ndjson``, refusing encrypted and sealed columns with a clear error."""
        return self._plain_only("write_ndjson").write_ndjson(file)


@pl.api.register_lazyframe_namespace("ghost")
class GhostLazyFrame:
    """``lf.ghost.collect(session)``: collect, then reveal in one keyhost request."""

    def __init__(self, lf: pl.LazyFrame) -> None:
        self._lf = lf

    def collect(self, session: Session, *, engine: Literal["auto", "in-memory", "streaming"] = "auto") -> pl.DataFrame:
        """Run the query with at most two keyhost round trips, whatever its size.

        First every comparison token the plan needs is fetched in one request, then the query
        is collected, then every sealed value is revealed in one more request. With
        ``engine="auto"``, plans with ``ghost.key()`` or sealed aggregates run on the in-memory
        engine (see :func:`ghostpii.keyed.prefers_in_memory`), others on Polars' default.
        """
        check_plan(self._lf)
        if engine == "auto" and prefers_in_memory(self._lf):
            engine = "in-memory"  # see keyed.prefers_in_memory
        with ghost_errors():
            before = session.stats()["round_trips"]
            prefetch(self._lf, session)
            used = session.stats()["round_trips"] - before
            return reveal(self._lf.collect(engine=engine), session, round_trips_used=used)
