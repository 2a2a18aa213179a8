"""Compiling a Polars expression over encrypted columns into a row-wise circuit (``gp.compute``).

The expression is read from ``expr.meta.serialize(format="json")``. Linear parts over encrypted
columns (``3*a + 2*b - 4``) stay *linear forms*: the analyst computes them over its masked cells
in plaintext (masks are additive) and each becomes ONE input of the circuit, one ciphertext per
row; everything else (comparisons, products of two values, ``abs``, ``min``/``max``/``clip``,
``when/then/otherwise``, ``& | ~``, small ``pow``) becomes a node of the circuit
(``ghostpii_proto::circuit``, the keyhost evaluates it under FHE).

Fixed point: a column stored with ``s`` decimals holds ``X = x·10^s``. Every value of the circuit
carries a decimal scale ``S`` (its integer is ``v·10^S``); sums align scales, products add them,
comparisons with constants are rounded exactly (``X > 1005.5`` is ``X > 1005`` for integers).
Each input gets a public offset that centres it on its declared bounds, so the width the keyhost
evaluates at (8, 16, 32 or 64 bits, the narrowest that holds every intermediate value) is as
small as the bounds allow.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import polars as pl

from ghostpii.errors import UnsupportedOperation

__all__ = ["Compiled", "compile_expression"]

_MAX_SCALE = 9
_CMP = {"Gt": "gt", "GtEq": "ge", "Lt": "lt", "LtEq": "le", "Eq": "eq", "NotEq": "ne"}
_FLIP = {"gt": "lt", "ge": "le", "lt": "gt", "le": "ge", "eq": "eq", "ne": "ne"}


@dataclass
class Lin:
    """``Σ w·x + const`` over encrypted columns, in the user's units."""

    terms: dict[str, Fraction]
    const: Fraction

    @property
    def is_const(self) -> bool:
        return not self.terms


@dataclass
class Val:
    """A circuit node: its value is ``node_value / 10^scale``; ``bool`` nodes are 0/1."""

    node: int
    scale: int
    boolean: bool = False


@dataclass
class Compiled:
    """A compiled expression: the circuit's JSON, the encrypted columns of each input with its
    integer weights and offset, and how to read the output back."""

    inputs: list[dict[str, Any]]
    """Per input: ``{"columns": [name...], "weights": [int...], "offset": int}``."""
    nodes: list[dict[str, Any]] = field(default_factory=list)
    output: int = 0
    scale: int = 0
    boolean: bool = False

    def circuit(self, column_ids: dict[str, tuple[int, int]]) -> dict[str, Any]:
        """The circuit's JSON; ``column_ids``: name → (column_id, epoch)."""
        return {
            "inputs": [
                {
                    "terms": [
                        {"column_id": column_ids[c][0], "epoch": column_ids[c][1], "weight": w}
                        for c, w in zip(i["columns"], i["weights"], strict=True)
                    ],
                    **({"offset": i["offset"]} if i["offset"] else {}),
                }
                for i in self.inputs
            ],
            "nodes": self.nodes,
            "output": self.output,
        }


class _Compiler:
    def __init__(self, metas: dict[str, dict[str, Any]]) -> None:
        self.metas = metas
        self.out = Compiled(inputs=[])
        self.consts: dict[tuple[str, Any], int] = {}

    # -- nodes ---------------------------------------------------------------------------
    def add(self, node: dict[str, Any]) -> int:
        key = json.dumps(node, sort_keys=True)
        if node["op"] in ("const", "bool") and ("c", key) in self.consts:
            return self.consts[("c", key)]
        self.out.nodes.append(node)
        i = len(self.out.nodes) - 1
        if node["op"] in ("const", "bool"):
            self.consts[("c", key)] = i
        return i

    def const(self, v: int) -> int:
        return self.add({"op": "const", "value": int(v)})

    def rescale(self, v: Val, scale: int) -> Val:
        if scale == v.scale:
            return v
        f = 10 ** (scale - v.scale)
        return Val(self.add({"op": "mul", "a": v.node, "b": self.const(f)}), scale)

    # -- linear forms --------------------------------------------------------------------
    def lin_scale(self, lin: Lin) -> int:
        """The smallest scale at which every weight and the constant are integers."""
        for s in range(_MAX_SCALE + 1):
            ok = (
                all(
                    s >= int(self.metas[c]["scale"]) and (w * 10 ** (s - int(self.metas[c]["scale"]))).denominator == 1
                    for c, w in lin.terms.items()
                )
                and (lin.const * 10**s).denominator == 1
            )
            if ok:
                return s
        raise UnsupportedOperation(
            f"gp.compute(): the weights or constants {lin} need more than {_MAX_SCALE} decimals; round them"
        )

    def materialise(self, x: Lin | Val) -> Val:
        v, rest = self.raw(x)
        if rest:
            return Val(self.add({"op": "add", "a": v.node, "b": self.const(rest)}), v.scale, False)
        return v

    def raw(self, x: Lin | Val) -> tuple[Val, int]:
        """A node and an integer ``r`` at its scale with ``x = (node + r) / 10^scale``: a linear form
        becomes ONE input (its integer weights and a public offset centring it on its bounds)."""
        if isinstance(x, Val):
            return x, 0
        s = self.lin_scale(x)
        if x.is_const:
            return Val(self.const(int(x.const * 10**s)), s), 0
        cols = sorted(x.terms)
        weights = [int(x.terms[c] * 10 ** (s - int(self.metas[c]["scale"]))) for c in cols]
        lo = hi = 0
        for c, w in zip(cols, weights, strict=True):
            b = self.metas[c].get("bounds")
            if not b:
                raise UnsupportedOperation(
                    f"gp.compute(): column {c!r} was encrypted without bounds, so no width can hold it; "
                    f"encrypt it with bounds"
                )
            lo += min(w * int(b[0]), w * int(b[1]))
            hi += max(w * int(b[0]), w * int(b[1]))
        offset = -((lo + hi) // 2)
        self.out.inputs.append({"columns": cols, "weights": weights, "offset": offset})
        node = self.add({"op": "input", "index": len(self.out.inputs) - 1})
        return Val(node, s), int(x.const * 10**s) - offset

    # -- the walk ------------------------------------------------------------------------
    def walk(self, e: dict[str, Any]) -> Lin | Val:
        (kind, body), *_ = e.items()
        if kind == "Alias":
            return self.walk(body[0])
        if kind == "Column":
            if body not in self.metas:
                raise UnsupportedOperation(
                    f"gp.compute(): column {body!r} is not an encrypted column of the frame; inside gp.compute only "
                    f"encrypted num columns and constants are supported (combine plaintext columns outside it)"
                )
            return Lin({body: Fraction(1)}, Fraction(0))
        if kind == "Literal":
            return self.literal(body)
        if kind == "BinaryExpr":
            return self.binary(body["op"], self.walk(body["left"]), self.walk(body["right"]))
        if kind == "Ternary":
            return self.select(self.walk(body["predicate"]), self.walk(body["truthy"]), self.walk(body["falsy"]))
        if kind == "Function":
            return self.function(body["function"], [self.walk(i) for i in body["input"]])
        raise UnsupportedOperation(f"gp.compute() does not support {kind} expressions")

    def literal(self, body: dict[str, Any]) -> Lin | Val:
        (_, v), *_ = body.items()
        (t, x), *_ = v.items()
        if t == "Boolean" or isinstance(x, bool):
            return Val(self.add({"op": "bool", "value": bool(x)}), 0, boolean=True)
        if t in ("Int", "Float") or isinstance(x, int | float):
            if isinstance(x, float) and not math.isfinite(x):
                raise UnsupportedOperation("gp.compute(): constants must be finite")
            return Lin({}, Fraction(str(x)) if isinstance(x, float) else Fraction(int(x)))
        raise UnsupportedOperation(f"gp.compute(): the literal {body} is not a number or a boolean")

    def binary(self, op: str, a: Lin | Val, b: Lin | Val) -> Lin | Val:
        if op in ("Plus", "Minus"):
            sign = 1 if op == "Plus" else -1
            if isinstance(a, Lin) and isinstance(b, Lin):
                terms = dict(a.terms)
                for c, w in b.terms.items():
                    terms[c] = terms.get(c, Fraction(0)) + sign * w
                return Lin({c: w for c, w in terms.items() if w != 0}, a.const + sign * b.const)
            x, y = self.materialise(a), self.materialise(b)
            s = max(x.scale, y.scale)
            x, y = self.rescale(x, s), self.rescale(y, s)
            return Val(self.add({"op": "add" if sign == 1 else "sub", "a": x.node, "b": y.node}), s)
        if op == "Multiply":
            for p, q in ((a, b), (b, a)):
                if isinstance(p, Lin) and p.is_const:
                    if isinstance(q, Lin):
                        return Lin({c: w * p.const for c, w in q.terms.items() if p.const}, q.const * p.const)
                    if p.const.denominator == 1:
                        return Val(self.add({"op": "mul", "a": q.node, "b": self.const(int(p.const))}), q.scale)
                    s = self.lin_scale(p)
                    return Val(self.add({"op": "mul", "a": q.node, "b": self.const(int(p.const * 10**s))}), q.scale + s)
            x, y = self.materialise(a), self.materialise(b)
            return Val(self.add({"op": "mul", "a": x.node, "b": y.node}), x.scale + y.scale)
        if op == "TrueDivide":
            if isinstance(b, Lin) and b.is_const and b.const != 0 and isinstance(a, Lin):
                return Lin({c: w / b.const for c, w in a.terms.items()}, a.const / b.const)
            raise UnsupportedOperation(
                "gp.compute(): only a linear expression of encrypted columns can be divided, and only by a non-zero "
                "constant (FHE division is not supported); multiply the other side instead"
            )
        if op in _CMP:
            return self.compare(_CMP[op], a, b)
        if op in ("And", "Or", "LogicalAnd", "LogicalOr"):
            x, y = self.materialise(a), self.materialise(b)
            self.need_bool(x, op)
            self.need_bool(y, op)
            return Val(self.add({"op": "and" if "And" in op else "or", "a": x.node, "b": y.node}), 0, True)
        raise UnsupportedOperation(f"gp.compute() does not support the operator {op} (see docs/rowwise.md)")

    def need_bool(self, v: Val, what: str) -> None:
        if not v.boolean:
            raise UnsupportedOperation(f"gp.compute(): {what} takes boolean operands (comparisons)")

    def compare(self, cmp: str, a: Lin | Val, b: Lin | Val) -> Val:
        # fold a constant side into the other's threshold (exact for integers at the scale)
        if isinstance(b, Lin) and b.is_const and not (isinstance(a, Lin) and a.is_const):
            return self.threshold(cmp, a, b.const)
        if isinstance(a, Lin) and a.is_const and not (isinstance(b, Lin) and b.is_const):
            return self.threshold(_FLIP[cmp], b, a.const)
        if isinstance(a, Lin) and isinstance(b, Lin):
            diff = self.binary("Minus", a, b)
            return self.threshold(cmp, diff, Fraction(0))
        x, y = self.materialise(a), self.materialise(b)
        s = max(x.scale, y.scale)
        x, y = self.rescale(x, s), self.rescale(y, s)
        return Val(self.add({"op": "cmp", "cmp": cmp, "a": x.node, "b": y.node}), 0, True)

    def threshold(self, cmp: str, a: Lin | Val, c: Fraction) -> Val:
        """``a cmp c`` with ``c`` a constant."""
        x, rest = self.raw(a)
        t = c * 10**x.scale - rest
        if t.denominator != 1:
            if cmp == "eq":
                return Val(self.add({"op": "bool", "value": False}), 0, True)
            if cmp == "ne":
                return Val(self.add({"op": "bool", "value": True}), 0, True)
            # integers: X > t ⇔ X > floor(t); X >= t ⇔ X > floor(t); X < t ⇔ X <= floor(t)
            f = math.floor(t)
            cmp = {"gt": "gt", "ge": "gt", "lt": "le", "le": "le"}[cmp]
            t = Fraction(f)
        return Val(self.add({"op": "cmp", "cmp": cmp, "a": x.node, "b": self.const(int(t))}), 0, True)

    def select(self, p: Lin | Val, t: Lin | Val, f: Lin | Val) -> Val:
        c = self.materialise(p)
        self.need_bool(c, "when()")
        x, y = self.materialise(t), self.materialise(f)
        s = max(x.scale, y.scale)
        x, y = self.rescale(x, s), self.rescale(y, s)
        return Val(
            self.add({"op": "select", "cond": c.node, "then": x.node, "otherwise": y.node}),
            s,
            x.boolean and y.boolean,
        )

    def function(self, f: Any, args: list[Lin | Val]) -> Lin | Val:
        name = f if isinstance(f, str) else next(iter(f))
        if name == "Negate":
            return self.binary("Multiply", Lin({}, Fraction(-1)), args[0])
        if name == "Abs":
            x = self.materialise(args[0])
            return Val(self.add({"op": "abs", "a": x.node}), x.scale)
        if name == "Boolean" and f["Boolean"] == "Not":
            x = self.materialise(args[0])
            self.need_bool(x, "~")
            return Val(self.add({"op": "not", "a": x.node}), 0, True)
        if name == "Pow":
            e = args[1]
            if not (isinstance(e, Lin) and e.is_const and e.const.denominator == 1 and 1 <= e.const <= 4):
                raise UnsupportedOperation("gp.compute(): pow takes a constant integer exponent from 1 to 4")
            if e.const == 1:
                return args[0]
            x = self.materialise(args[0])
            k = int(e.const)
            return Val(self.add({"op": "pow", "a": x.node, "exp": k}), x.scale * k)
        if name in ("MinHorizontal", "MaxHorizontal"):
            return self.extremum("min" if name == "MinHorizontal" else "max", args)
        if name == "Clip":
            spec = f["Clip"]
            clipped: Lin | Val = args[0]
            rest = args[1:]
            if spec.get("has_min"):
                clipped = self.extremum("max", [clipped, rest.pop(0)])
            if spec.get("has_max"):
                clipped = self.extremum("min", [clipped, rest.pop(0)])
            return clipped
        raise UnsupportedOperation(f"gp.compute() does not support the function {name} (see docs/rowwise.md)")

    def extremum(self, op: str, args: list[Lin | Val]) -> Val:
        vals = [self.materialise(a) for a in args]
        s = max(v.scale for v in vals)
        vals = [self.rescale(v, s) for v in vals]
        acc = vals[0]
        for v in vals[1:]:
            acc = Val(self.add({"op": op, "a": acc.node, "b": v.node}), s)
        return acc


def compile_expression(expr: pl.Expr, metas: dict[str, dict[str, Any]]) -> Compiled:
    """Compile ``expr``; ``metas``: the metadata of the frame's encrypted ``num`` columns."""
    if not isinstance(expr, pl.Expr):
        raise TypeError(f"gp.compute() takes a polars expression, got {type(expr).__name__}")
    try:
        tree = json.loads(expr.meta.serialize(format="json"))
    except Exception as e:  # noqa: BLE001 - polars raises several types here
        raise UnsupportedOperation(f"gp.compute(): the expression cannot be read: {e}") from None
    c = _Compiler(metas)
    out = c.materialise(c.walk(tree))
    if not c.out.inputs:
        raise UnsupportedOperation("gp.compute(): the expression uses no encrypted column; compute it in plaintext")
    c.out.output, c.out.scale, c.out.boolean = out.node, out.scale, out.boolean
    return c.out
