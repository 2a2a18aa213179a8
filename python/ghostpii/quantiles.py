"""Quantiles and medians of encrypted columns with the ``ord`` facet, by a search with comparison
tokens: ``pl.col("dob").ghost.median()``, ``pl.col("income").ghost.quantile(0.9)``.

The kernel seals, per group, the order cells of the group's non-null rows. Revealing
(``lf.ghost.collect``, ``gp.reveal``) searches every sealed quantile of the frame together: each
round asks the keyhost for the tokens of several evenly spaced constants per open window (ONE
request for all groups and columns), buckets the window's rows locally (Rust, rayon), and keeps
the bucket holding the wanted rank, until the window is a single value of the order domain.
A query takes at most 8 keyhost round trips in all (``MAX_ROUND_TRIPS``); the search gets the
round trips the query's other requests leave. Interpolation follows Polars' ``quantile``
(default ``"nearest"``; ``"lower"``, ``"higher"``, ``"midpoint"``, ``"linear"``, ``"equiprobable"``);
``median()`` is ``quantile(0.5, "linear")`` as in Polars. The tokens need a ``compare`` grant and
count against its ``max_constants``; see docs/threat-model.md, "Quantiles".
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any, Literal

import polars as pl
from polars.plugins import register_plugin_function

from ghostpii import _internal, _protocol
from ghostpii._plugin import PLUGIN_PATH
from ghostpii.client import Session
from ghostpii.dtypes import SealedQuantileType, is_sealed, is_sealed_quantile, is_sealed_rows
from ghostpii.errors import CiphertextError, PermissionDenied

__all__ = ["MAX_ROUND_TRIPS", "QuantileMethod", "SealedQuantileExpr", "quantile", "resolve"]

QuantileMethod = Literal["nearest", "lower", "higher", "midpoint", "linear", "equiprobable"]
METHODS = ("nearest", "lower", "higher", "midpoint", "linear", "equiprobable")
MAX_ROUND_TRIPS = 8


class SealedQuantileExpr(pl.Expr):
    """A sealed quantile. ``.filter(pred)`` filters the rows before the quantile is taken."""

    _ghost_input: pl.Expr
    _ghost_kwargs: dict[str, Any]

    @classmethod
    def _make(cls, expr: pl.Expr, kwargs: dict[str, Any]) -> SealedQuantileExpr:
        raw = register_plugin_function(
            plugin_path=PLUGIN_PATH,
            function_name="ghost_quantile",
            args=expr,
            kwargs=kwargs,
            returns_scalar=True,
            is_elementwise=False,
        )
        out = cls._from_pyexpr(raw.ext.to(SealedQuantileType())._pyexpr)
        assert isinstance(out, SealedQuantileExpr)
        out._ghost_input = expr
        out._ghost_kwargs = kwargs
        return out

    def filter(self, *predicates: Any, **constraints: Any) -> SealedQuantileExpr:
        """The quantile of only the rows where the predicates hold."""
        return SealedQuantileExpr._make(self._ghost_input.filter(*predicates, **constraints), self._ghost_kwargs)


def quantile(expr: pl.Expr, q: float, interpolation: QuantileMethod = "nearest") -> SealedQuantileExpr:
    """Sealed ``q``-quantile of an encrypted column with the ``ord`` facet (Polars' semantics)."""
    if isinstance(q, bool) or not isinstance(q, int | float) or not 0.0 <= float(q) <= 1.0:
        raise ValueError(f"the quantile must be a number in [0, 1], got {q!r}")
    if interpolation not in METHODS:
        raise ValueError(f"interpolation must be one of {METHODS}, got {interpolation!r}")
    return SealedQuantileExpr._make(expr, {"q": float(q), "method": interpolation})


def _output(values: pl.Series, meta: dict[str, Any], name: str) -> pl.Series:
    """Search results (Float64 in the column's units: days, ticks) in Polars' output dtype."""
    dtype = meta.get("dtype")
    if dtype == "date":
        return (values * 86_400_000_000).cast(pl.Int64).cast(pl.Datetime("us")).alias(name)
    if dtype == "datetime":
        unit = meta.get("time_unit", "us")
        return values.cast(pl.Int64).cast(pl.Datetime(unit, meta.get("time_zone"))).alias(name)
    return values.alias(name)


def _other_sealed(df: pl.DataFrame) -> bool:
    return any(is_sealed(d) or is_sealed_rows(d) for d in df.schema.values())


def resolve(df: pl.DataFrame, session: Session, *, round_trips_used: int = 0) -> pl.DataFrame:
    """Replace every sealed quantile column of ``df`` by its value, searching all of them
    together: one keyhost request per round, within the round trips the query has left
    (``MAX_ROUND_TRIPS`` minus those used, minus one for revealing the other sealed values)."""
    cols = [n for n, d in df.schema.items() if is_sealed_quantile(d)]
    if not cols:
        return df
    payloads: list[bytes | None] = []
    spans: list[tuple[str, int]] = []
    for c in cols:
        p = df[c].ext.storage().struct.field("payload").to_list()
        payloads += p
        spans.append((c, len(p)))
    rounds = MAX_ROUND_TRIPS - round_trips_used - (1 if _other_sealed(df) else 0)
    search = _internal.QuantileSearch(payloads, max(rounds, 1))
    while not search.done():
        needs = search.needs()
        foreign = {n["keyhost"] for n in needs} - {session.keyhost_id}
        if foreign:
            raise CiphertextError(
                f"ghost.quantile(): the columns were encrypted under keyhost(s) {sorted(foreign)}, but the "
                f"session is connected to keyhost {session.keyhost_id!r}"
            )
        try:
            tokens = session.answer_keys(
                [_protocol.compare(n["dataset_id"], n["column_id"], n["epoch"], n["constant"]) for n in needs]
            )
        except PermissionDenied as e:
            columns = sorted({str(n["column"]) for n in needs})
            raise type(e)(
                f"ghost.quantile() on column(s) {columns} needs {len(needs)} comparison tokens in this round of its "
                f"search (each counts against the compare grant's max_constants): {e.message}",
                reason=e.reason,
                status=e.status,
                missing_grant=e.missing_grant,
            ) from e
        search.advance([base64.b64decode(t["token"]) for t in tokens])
    values = search.results()
    out: list[pl.Series] = []
    at = 0
    for c, n in spans:
        meta = _meta_of(payloads[at : at + n])
        out.append(_output(values.slice(at, n), meta, c))
        at += n
    return df.with_columns(out)


def _meta_of(payloads: list[bytes | None]) -> dict[str, Any]:
    for p in payloads:
        if p is not None:
            (n,) = struct.unpack_from("<I", p)
            meta: dict[str, Any] = json.loads(p[4 : 4 + n])["meta"]
            return meta
    return {}
