"""The ``deg2`` facet at encryption: ``gp.encrypt(..., products=[("age", "bmi", "charges")])``.

Each tuple is a group: every pair of its members gets the product ``x·y`` and every member its
square ``x²``, each masked like ``num`` under a key of its own (the keyhost registers each
product as a column named ``deg2:["a","b"]``). The cells are stored in the storage struct of
the pair's first member, so they travel with it through Parquet and IPC, and nothing about
them is visible at rest. Products are exact fixed-point products (scale = the sum of the
members' decimals); groups whose declared bounds would let a product leave 64 bits are refused
before anything is registered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from ghostpii.errors import EncryptionError
from ghostpii.schema import ColumnSpec

__all__ = ["ProductPlan", "plan_products", "product_column_name"]

_I64 = (-(2**63), 2**63 - 1)
_NATURAL = {
    "boolean": (0, 1),
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
}


def product_column_name(a: str, b: str) -> str:
    """The keyhost column of the products of ``a`` and ``b`` (as ``ghostpii_core::deg2``)."""
    return "deg2:" + json.dumps([a, b], ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class ProductPlan:
    """One product of a group: stored in column ``a`` (``b == a`` for the square)."""

    a: str
    b: str
    scale: int
    bounds: tuple[int, int]

    def request(self) -> dict[str, Any]:
        """The keyhost registration of the product column."""
        return {
            "name": product_column_name(self.a, self.b),
            "dtype": "int64",
            "scale": self.scale,
            "bounds": list(self.bounds),
            "facets": ["num"],
        }


def _member_bounds(name: str, spec: ColumnSpec, logical: str) -> tuple[int, int]:
    b = spec.scaled_bounds()
    if b is not None:
        return b
    if logical in _NATURAL and spec.decimals == 0:
        return _NATURAL[logical]
    raise EncryptionError(
        f"column {name!r} is in a products group but has no declared bounds: products must provably fit "
        f"64 bits, so declare bounds=(lo, hi) in its gp.number()/gp.integer() spec"
    )


def _bounds(a: tuple[int, int], b: tuple[int, int], square: bool) -> tuple[int, int]:
    if square:
        hi = max(a[0] ** 2, a[1] ** 2)
        lo = 0 if a[0] <= 0 <= a[1] else min(a[0] ** 2, a[1] ** 2)
        return lo, hi
    c = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]]
    return min(c), max(c)


def plan_products(
    products: Sequence[Sequence[str]] | None,
    schema: Mapping[str, ColumnSpec],
    logical: Mapping[str, str],
) -> list[ProductPlan]:
    """Validate the groups and list every product once, in group order (refusing before
    anything is registered)."""
    if not products:
        return []
    if isinstance(products, str | bytes):
        raise EncryptionError('products must be a list of tuples of column names, e.g. [("age", "bmi")]')
    out: dict[tuple[str, str], ProductPlan] = {}
    for group in products:
        if isinstance(group, str) or not group:
            raise EncryptionError(f"each products group is a non-empty tuple of column names, got {group!r}")
        members = list(dict.fromkeys(group))
        for m in members:
            if m not in schema:
                raise EncryptionError(
                    f"products group {tuple(group)!r} names {m!r}, which the schema does not encrypt; "
                    f"add it to the schema (products are of encrypted columns)"
                )
            if logical[m] in ("string", "date", "datetime"):
                raise EncryptionError(
                    f"column {m!r} ({logical[m]}) cannot be in a products group: products are of numbers, "
                    f"integers and booleans"
                )
        for i, a in enumerate(members):
            for b in members[i:]:
                key = (a, b) if (b, a) not in out else (b, a)
                if key in out:
                    continue
                ba = _member_bounds(a, schema[a], logical[a])
                bb = _member_bounds(b, schema[b], logical[b])
                lo, hi = _bounds(ba, bb, a == b)
                if lo < _I64[0] or hi > _I64[1]:
                    what = f"the square of {a!r}" if a == b else f"the product of {a!r} and {b!r}"
                    raise EncryptionError(
                        f"{what} could reach {max(abs(lo), abs(hi)):.3e} in fixed point, beyond 64 bits, so its "
                        f"sums could not be exact; declare tighter bounds or fewer decimals for these columns"
                    )
                out[key] = ProductPlan(a, b, schema[a].decimals + schema[b].decimals, (lo, hi))
    return list(out.values())


def products_meta(
    plans: Sequence[ProductPlan], column: str, registered: Mapping[ProductPlan, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The ``products`` metadata of ``column``: the products it stores."""
    return [
        {
            "with": p.b,
            "column_id": registered[p]["column_id"],
            "epoch": registered[p]["epoch"],
            "scale": p.scale,
            "bounds": list(p.bounds),
        }
        for p in plans
        if p.a == column
    ]


def check_frame_dtypes(df: pl.DataFrame, plans: Sequence[ProductPlan]) -> None:
    """Products need numeric (or boolean) inputs; refuse others with the column named."""
    for p in plans:
        for c in (p.a, p.b):
            d = df[c].dtype
            if not (d.is_numeric() or d == pl.Boolean):
                raise EncryptionError(f"column {c!r} has dtype {d}; products are of numbers and booleans")
