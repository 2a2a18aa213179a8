"""Grants: ``gp.allow.decrypt("col")``, ``gp.allow.aggregate("col", min_rows=10)``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Allow", "aggregate", "decrypt"]


@dataclass(frozen=True)
class Allow:
    """One permission to ask the keyhost for a kind of answer key on one column."""

    operation: str
    column: str
    params: dict[str, Any] = field(default_factory=dict)


def decrypt(column: str) -> Allow:
    """Allow per-row decryption of ``column`` (reveals its values)."""
    return Allow("decrypt", column)


def aggregate(column: str, *, min_rows: int | None = None) -> Allow:
    """Allow sums and means of ``column`` over at least ``min_rows`` rows."""
    if min_rows is not None and min_rows < 1:
        raise ValueError("min_rows must be at least 1")
    return Allow("aggregate", column, {"min_rows": min_rows})
