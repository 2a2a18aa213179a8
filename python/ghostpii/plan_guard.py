"""Refuse plans that would run ordinary Polars operations on ciphertext.

Polars sorts, groups, joins, deduplicates, ranks and hashes an encrypted column by its storage
(row ids and ciphertext bytes) without complaint, so the answers are plausible and wrong. Polars
offers no hook on those operations, so ghostpii inspects what it is asked to run:
``lf.ghost.collect`` walks the optimised plan (Polars' IR, with the schema of every node) and
refuses any such use of an encrypted column, and joins on ``ghost.key()`` pseudonyms of columns
outside one join domain (they would match nothing); ``gp.reveal`` refuses a frame that still holds an
encrypted column next to sealed aggregates (its rows were grouped by ciphertext). A plain
``.collect()`` is not inspected (see docs/concepts.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import polars as pl

from ghostpii.client import Session
from ghostpii.dtypes import is_encrypted, is_sealed, is_sealed_quantile
from ghostpii.errors import UnsupportedOperation, arithmetic_error, ghost_errors, string_op_error
from ghostpii.quantiles import resolve as resolve_quantiles
from ghostpii.reveal import reveal as _reveal

__all__ = ["check_frame", "check_plan", "reveal"]

_ORDER = (
    "orders rows by ciphertext bytes, not by value; compare against constants instead "
    "(ghost.lt/le/gt/ge/between, ghost.bucketize)"
)
_EQUAL = (
    "compares ciphertexts, and equal values encrypt differently in every row; use its pseudonymous "
    "keys instead, pl.col(name).ghost.key() (encrypt the column with group=True and hold a "
    "gp.allow.group grant), ghost.eq / ghost.is_in against constants (match=True), or a "
    "plaintext column"
)
# expression functions (by their Polars IR name) that misbehave on ciphertext
_FUNCTIONS = {
    "rank": ("rank", _ORDER),
    "arg_max": ("arg_max", _ORDER),
    "arg_min": ("arg_min", _ORDER),
    "arg_sort": ("arg_sort", _ORDER),
    "top_k": ("top_k", _ORDER),
    "bottom_k": ("bottom_k", _ORDER),
    "top_k_by": ("top_k_by", _ORDER),
    "bottom_k_by": ("bottom_k_by", _ORDER),
    "max_by": ("max_by", _ORDER),
    "min_by": ("min_by", _ORDER),
    "search_sorted": ("search_sorted", _ORDER),
    "unique": ("unique", _EQUAL),
    "unique_counts": ("unique_counts", _EQUAL),
    "arg_unique": ("arg_unique", _EQUAL),
    "value_counts": ("value_counts", _EQUAL),
    "mode": ("mode", _EQUAL),
    "hash": ("hash", _EQUAL),
    "isduplicated": ("is_duplicated", _EQUAL),
    "isunique": ("is_unique", _EQUAL),
    "isfirstdistinct": ("is_first_distinct", _EQUAL),
    "islastdistinct": ("is_last_distinct", _EQUAL),
}
_AGGS = {"n_unique": _EQUAL}


def _refuse(what: str, column: str, why: str) -> UnsupportedOperation:
    return UnsupportedOperation(f"{what} on the encrypted column {column!r} {why}")


_CHILD_ATTRS = ("input", "arguments", "expr", "left", "right", "truthy", "falsy", "predicate", "by", "idx",
                "function", "partition_by", "order_by")  # fmt: skip


def _children(e: Any) -> list[int]:
    """The sub-expression ids of an IR expression view."""
    out: list[int] = []
    for attr in _CHILD_ATTRS:
        v = getattr(e, attr, None)
        if isinstance(v, int) and not isinstance(v, bool):
            out.append(v)
        elif isinstance(v, list):
            out += [x for x in v if isinstance(x, int) and not isinstance(x, bool)]
    return out


class _Walker:
    def __init__(self, nt: Any) -> None:
        self.nt = nt

    def encrypted_inputs(self) -> set[str]:
        nt, here = self.nt, self.nt.get_node()
        names: set[str] = set()
        for i in nt.get_inputs():
            nt.set_node(i)
            names |= {n for n, d in nt.get_schema().items() if is_encrypted(d)}
        nt.set_node(here)
        return names

    def view(self, expr_id: int) -> Any:
        try:
            return self.nt.view_expression(expr_id)
        except NotImplementedError:  # e.g. `.ext.to(...)`, which the IR view does not expose
            return None

    def column(self, expr_id: int) -> str | None:
        e = self.view(expr_id)
        return str(e.name) if type(e).__name__ == "Column" else None

    def expr(self, expr_id: int, enc: set[str]) -> Iterator[UnsupportedOperation]:
        e = self.view(expr_id)
        kind = type(e).__name__
        if e is None:
            return
        children: list[int] = []
        if kind == "Function":
            children = list(e.input)
            name = str(e.function_data[0]).rsplit(".", 1)[-1].lower()
            if name in _FUNCTIONS:
                label, why = _FUNCTIONS[name]
                for c in children:
                    if (col := self.column(c)) in enc:
                        yield _refuse(label, str(col), why)
        elif kind == "Agg":
            children = list(e.arguments)
            if str(e.name) in _AGGS:
                for c in children:
                    if (col := self.column(c)) in enc:
                        yield _refuse(str(e.name), str(col), _AGGS[str(e.name)])
        elif kind == "Sort":
            children = [e.expr]
            if (col := self.column(e.expr)) in enc:
                yield _refuse("sort", str(col), _ORDER)
        elif kind == "SortBy":
            children = [e.expr, *e.by]
            for c in e.by:
                if (col := self.column(c)) in enc:
                    yield _refuse("sort_by", str(col), _ORDER)
        elif kind == "Window":
            children = [e.function, *e.partition_by]
            for c in e.partition_by:
                if (col := self.column(c)) in enc:
                    yield _refuse("over (partition by)", str(col), _EQUAL)
        elif kind not in ("Literal", "Column", "Len"):
            children = _children(e)
        for c in children:
            yield from self.expr(c, enc)

    def keys(self, irs: Any, enc: set[str], what: str, why: str) -> Iterator[UnsupportedOperation]:
        for ir in irs or []:
            if (col := self.column(ir.node)) in enc:
                yield _refuse(what, str(col), why)

    def key_meta(self, expr_id: int, node: int) -> dict[str, Any] | None:
        """The column metadata behind a ``ghost.key()`` expression evaluated on ``node``."""
        e = self.view(expr_id)
        if type(e).__name__ != "Function" or not _is_key_function(e.function_data):
            return None
        col = self.column(e.input[0]) if e.input else None
        return None if col is None else self.column_meta(node, col)

    def column_meta(self, node: int, col: str) -> dict[str, Any] | None:
        nt, here = self.nt, self.nt.get_node()
        try:
            nt.set_node(node)
            dtype = nt.get_schema().get(col)
            return dict(dtype.meta()) if is_encrypted(dtype) else None
        finally:
            nt.set_node(here)

    def provenance(self, node: int, col: str, depth: int = 0) -> dict[str, Any] | None:
        """The column metadata of ``col`` of ``node`` if it holds ``ghost.key()`` pseudonyms,
        followed through selections, renames, filters and slices."""
        nt, here = self.nt, self.nt.get_node()
        if depth > 64:
            return None
        try:
            nt.set_node(node)
            n, inputs = nt.view_current_node(), nt.get_inputs()
            kind = type(n).__name__
            if kind in ("Select", "HStack"):
                for ir in n.expr if kind == "Select" else n.exprs:
                    if str(ir.output_name) == col:
                        meta = self.key_meta(ir.node, inputs[0])
                        src = self.column(ir.node)
                        if meta is None and src is not None:
                            return self.provenance(inputs[0], src, depth + 1)
                        return meta
                return self.provenance(inputs[0], col, depth + 1) if kind == "HStack" else None
            if kind in ("Filter", "Slice", "Sort", "Cache", "Distinct") and inputs:
                return self.provenance(inputs[0], col, depth + 1)
            return None
        finally:
            nt.set_node(here)

    def join_key(self, ir: Any, node: int) -> dict[str, Any] | None:
        meta = self.key_meta(ir.node, node)
        if meta is None and (col := self.column(ir.node)) is not None:
            meta = self.provenance(node, col)
        return meta

    def key_domains(self, n: Any) -> Iterator[UnsupportedOperation]:
        """Pseudonyms of columns outside one join domain never match: refuse such a join."""
        inputs = self.nt.get_inputs()
        if len(inputs) != 2:
            return
        for left, right in zip(n.left_on or [], n.right_on or [], strict=False):
            lm, rm = self.join_key(left, inputs[0]), self.join_key(right, inputs[1])
            if lm is not None and rm is not None and not _one_key_space(lm, rm):
                yield UnsupportedOperation(
                    f"join on ghost.key() of {_label(lm)} and {_label(rm)} would match nothing: pseudonyms "
                    f"are equal only within one column or one join domain of one keyhost (left: "
                    f"{_domain(lm)}, right: {_domain(rm)}); encrypt both columns with "
                    f"join_domain=... (session.create_join_domain) to join them"
                )

    def node(self) -> Iterator[UnsupportedOperation]:
        nt = self.nt
        n = nt.view_current_node()
        kind = type(n).__name__
        enc = self.encrypted_inputs()
        if enc:
            if kind == "Sort":
                yield from self.keys(n.by_column, enc, "sort", _ORDER)
            elif kind == "GroupBy":
                yield from self.keys(n.keys, enc, "group_by", _EQUAL)
            elif kind == "Join":
                yield from self.keys([*n.left_on, *n.right_on], enc, "join", _EQUAL)
            elif kind == "Distinct":
                for col in n.options[1] or []:
                    if col in enc:
                        yield _refuse("unique", str(col), _EQUAL)
            for attr in ("expr", "exprs", "aggs", "predicate"):
                v = getattr(n, attr, None)
                for ir in v if isinstance(v, list) else [v] if v is not None else []:
                    if type(ir).__name__ == "PyExprIR":
                        yield from self.expr(ir.node, enc)
        if kind == "Join":
            yield from self.key_domains(n)
        here = nt.get_node()
        for i in nt.get_inputs():
            nt.set_node(i)
            yield from self.node()
        nt.set_node(here)


def _is_key_function(data: Any) -> bool:
    return isinstance(data, tuple) and len(data) > 2 and data[0] == "ffi_plugin" and data[2] == "ghost_key"


def _one_key_space(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether ghost.key() pseudonyms of the two columns can be equal."""
    if a.get("keyhost") != b.get("keyhost"):
        return False
    if a.get("join_domain") is not None:
        return bool(a.get("join_domain") == b.get("join_domain"))
    return b.get("join_domain") is None and (a.get("dataset_id"), a.get("column_id")) == (
        b.get("dataset_id"),
        b.get("column_id"),
    )


def _label(m: dict[str, Any]) -> str:
    return f"{m.get('dataset')}.{m.get('column')}"


def _domain(m: dict[str, Any]) -> str:
    d = m.get("join_domain")
    where = f"keyhost {m.get('keyhost')}"
    return f"join domain {d!r} of {where}" if d is not None else f"no join domain, {where}"


def check_plan(lf: pl.LazyFrame) -> None:
    """Raise :class:`UnsupportedOperation` if the plan sorts, groups, joins, deduplicates, ranks
    or hashes by an encrypted column (nothing is run)."""
    try:
        nt = lf._ldf.visit()
    except pl.exceptions.PolarsError as e:
        # `.str.*` on ciphertext fails to resolve before any ghostpii code runs: name the
        # ciphertext operations instead; any other plan error is reported by collecting it
        if (err := string_op_error(e) or arithmetic_error(e)) is not None:
            raise err from e
        return
    problem = next(_Walker(nt).node(), None)
    if problem is not None:
        raise problem


def check_frame(df: pl.DataFrame) -> None:
    """Refuse to reveal sealed aggregates that sit next to an encrypted column: their rows were
    grouped by ciphertext (one group per row), or the frame mixes rows and aggregates."""
    enc = [n for n, d in df.schema.items() if is_encrypted(d)]
    if enc and any(is_sealed(d) or is_sealed_quantile(d) for d in df.schema.values()):
        raise _refuse(
            "revealing aggregates next to",
            enc[0],
            f"is refused: grouping by it {_EQUAL}; group by a plaintext column, or drop the encrypted "
            f"column before revealing",
        )


def reveal(df: pl.DataFrame, session: Session, *, round_trips_used: int = 0) -> pl.DataFrame:
    """Replace every sealed column of ``df`` by its plaintext, in ONE answer-key request (sealed
    quantiles: one more per round of their search, within 8 round trips per query).

    A refusal raises :class:`~ghostpii.errors.PermissionDenied` naming the missing grant;
    nothing is revealed then. A frame whose rows were grouped by ciphertext is refused.
    """
    if isinstance(df, pl.DataFrame):
        check_frame(df)
    with ghost_errors():
        if isinstance(df, pl.DataFrame):
            df = resolve_quantiles(df, session, round_trips_used=round_trips_used)
        return _reveal(df, session)
