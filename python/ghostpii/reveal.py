"""``gp.reveal``: open every sealed value of a frame with ONE batched answer-key request."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from ghostpii import _internal
from ghostpii.client import Session
from ghostpii.dtypes import is_sealed, is_sealed_rows
from ghostpii.errors import CiphertextError
from ghostpii.gram import GramBatch, is_gram

__all__ = ["reveal"]

_MOD = 1 << 128
_INT_TYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "boolean"}


def _signed(x: int) -> int:
    x %= _MOD
    return x - _MOD if x >= 1 << 127 else x


def _check_keyhost(meta: dict[str, Any], session: Session) -> None:
    if meta.get("keyhost") != session.keyhost_id:
        raise CiphertextError(
            f"column {meta.get('column')!r} was encrypted under keyhost {meta.get('keyhost')!r}, "
            f"but this session is connected to keyhost {session.keyhost_id!r}"
        )


def _sum_descriptor(p: dict[str, Any]) -> dict[str, Any]:
    m = p["meta"]
    terms = p.get("terms") or [{"column_id": m["column_id"], "epoch": m["epoch"], "weight": 1}]
    d: dict[str, Any] = {
        "op": "sum",
        "dataset_id": m["dataset_id"],
        "rids": p["rids"],
        "terms": [{"column_id": t["column_id"], "epoch": t["epoch"], "weight": t["weight"]} for t in terms],
    }
    if p.get("repeats"):
        # rows a join, concat or sample counted k times: their masks count k times as well
        d["repeats"] = [{"k": int(r["k"]), "rids": r["rids"]} for r in p["repeats"]]
    return d


def _aggregate_value(p: dict[str, Any], total: int) -> Any:
    """The plaintext of a sealed aggregate whose masked sum opened to ``total``."""
    m, n, op = p["meta"], int(p["n"]), p["op"]
    scale = 10 ** int(m["scale"])
    if op == "sum":
        if m["dtype"] in _INT_TYPES and scale == 1:
            return total
        return total / scale
    if n == 0:
        return None
    mean = total / (n * scale)
    if m["dtype"] == "date":
        return datetime(1970, 1, 1) + timedelta(days=mean)
    if m["dtype"] == "datetime":
        per_s = {"ns": 1e9, "us": 1e6, "ms": 1e3}[m.get("time_unit", "us")]
        value = datetime(1970, 1, 1) + timedelta(seconds=mean / per_s)
        return value.replace(tzinfo=UTC) if m.get("time_zone") else value
    return mean


def _aggregate_dtype(payloads: list[dict[str, Any] | None]) -> pl.DataType:
    p = next((q for q in payloads if q is not None), None)
    if p is None or is_gram(p):
        return pl.Float64()
    m = p["meta"]
    if p["op"] == "sum":
        return pl.Int64() if m["dtype"] in _INT_TYPES and int(m["scale"]) == 0 else pl.Float64()
    if m["dtype"] == "date":
        return pl.Datetime("us")
    if m["dtype"] == "datetime":
        return pl.Datetime(m.get("time_unit", "us"), m.get("time_zone"))
    return pl.Float64()


def reveal(df: pl.DataFrame, session: Session) -> pl.DataFrame:
    """Replace every sealed column of ``df`` (all groups, all columns) by its plaintext.

    All answer keys are obtained in ONE keyhost request. A refusal raises
    :class:`~ghostpii.errors.PermissionDenied` naming the missing grant; nothing is revealed then.
    """
    if not isinstance(df, pl.DataFrame):
        raise TypeError(f"reveal takes a polars DataFrame, got {type(df).__name__} (use lf.ghost.collect(session))")
    descriptors: list[dict[str, Any]] = []
    index: dict[str, int] = {}

    def want(d: dict[str, Any]) -> int:
        k = json.dumps(d, sort_keys=True)
        if k not in index:
            index[k] = len(descriptors)
            descriptors.append(d)
        return index[k]

    agg_cols: dict[str, list[tuple[dict[str, Any] | None, int | None]]] = {}
    grams = GramBatch()  # second moments: one descriptor per row set, whatever the statistics
    row_cols: dict[str, tuple[str, int | None]] = {}
    for name, dtype in df.schema.items():
        if is_sealed(dtype):
            entries: list[tuple[dict[str, Any] | None, int | None]] = []
            for raw in df[name].ext.storage().struct.field("payload"):
                if raw is None:
                    entries.append((None, None))
                    continue
                try:
                    p = json.loads(raw)
                except ValueError as e:
                    raise CiphertextError(f"column {name!r} holds a corrupt sealed value: {e}") from None
                if is_gram(p):
                    _check_keyhost(p, session)
                    entries.append((p, grams.add(p)))
                    continue
                _check_keyhost(p["meta"], session)
                entries.append((p, want(_sum_descriptor(p)) if int(p["n"]) > 0 else None))
            agg_cols[name] = entries
        elif is_sealed_rows(dtype):
            meta_json, rid_bytes = _internal.pending_rids(df[name])
            meta = json.loads(meta_json)
            _check_keyhost(meta, session)
            facet = "num" if "num" in meta["facets"] else "val"
            if df[name].null_count() == df.height:
                row_cols[name] = (facet, None)
                continue
            row_cols[name] = (
                facet,
                want(
                    {
                        "op": "decrypt",
                        "dataset_id": meta["dataset_id"],
                        "column_id": meta["column_id"],
                        "epoch": meta["epoch"],
                        "facet": facet,
                        "rids": base64.b64encode(rid_bytes).decode(),
                    }
                ),
            )
    if not agg_cols and not row_cols:
        return df
    grams.register(want)
    results = session.answer_keys(descriptors)
    new: list[pl.Series] = []
    for name, entries in agg_cols.items():
        values: list[Any] = []
        for p, i in entries:
            if p is None:
                values.append(None)
                continue
            if is_gram(p):
                values.append(grams.value(int(i or 0), results))
                continue
            total = _signed(int(p["masked"]) - int(results[i]["key"])) if i is not None else 0
            values.append(_aggregate_value(p, total))
        dtype = _aggregate_dtype([p for p, _ in entries])
        if dtype == pl.Int64 and any(v is not None and not -(2**63) <= v < 2**63 for v in values):
            dtype = pl.Int128()  # an exact sum beyond 64 bits is kept exact, never wrapped
        new.append(pl.Series(name, values, dtype=dtype))
    for name, (facet, i) in row_cols.items():
        keys = base64.b64decode(results[i]["keys"]) if i is not None else b""
        new.append(_internal.open_rows(df[name], facet, keys).alias(name))
    return df.with_columns(new)
