"""``gp.reveal``: open every sealed value of a frame with ONE batched answer-key request."""

from __future__ import annotations

import json
from typing import Any, Literal

import polars as pl

from ghostpii import _internal, _protocol
from ghostpii.client import Session
from ghostpii.dtypes import is_sealed, is_sealed_rows
from ghostpii.errors import CiphertextError, error_for
from ghostpii.gram import GramBatch, is_gram

__all__ = ["reveal", "sum_descriptors"]


def _check_keyhost(meta: dict[str, Any], session: Session) -> None:
    if meta.get("keyhost") != session.keyhost_id:
        raise CiphertextError(
            f"column {meta.get('column')!r} was encrypted under keyhost {meta.get('keyhost')!r}, "
            f"but this session is connected to keyhost {session.keyhost_id!r}"
        )


def sum_descriptors(series: pl.Series) -> list[dict[str, Any]]:
    """The keyhost ``sum`` descriptors of the non-empty values of a sealed column, in row order
    (for tools and tests that call ``POST /v1/answer-keys`` themselves)."""
    return [json.loads(d) for d in _internal.sealed_descriptors(series)]


def _rows_descriptor(
    name: str, series: pl.Series, session: Session
) -> tuple[str, tuple[_protocol.Decrypt, bytes] | None]:
    """The facet and ``decrypt`` descriptor (without its rid set) and rid set of a column marked
    by ``ghost.decrypt()``."""
    meta_json, rid_bytes = _internal.pending_rids(series)
    meta = json.loads(meta_json)
    _check_keyhost(meta, session)
    facet: Literal["num", "val"] = "num" if "num" in meta["facets"] else "val"
    if series.null_count() == series.len():
        return facet, None
    return facet, (_protocol.decrypt(meta["dataset_id"], meta["column_id"], meta["epoch"], facet), rid_bytes)


def _gram_payloads(name: str, series: pl.Series) -> list[dict[str, Any] | None] | None:
    """The payloads of a column of sealed Gram matrices (``ghostpii.gram``), or None when the
    column holds sealed sums (format 2, revealed in Rust)."""
    storage = series.ext.storage() if isinstance(series.dtype, pl.BaseExtension) else series
    if not isinstance(storage.dtype, pl.Struct):
        return None
    fields = storage.dtype.to_schema()
    if "op" in fields:  # format 2: a Gram matrix keeps its layout in `params`
        ops = storage.struct.field("op").drop_nulls()
        if ops.len() == 0 or (ops != "gram").any():
            return None
        payload = storage.struct.field("params")
    elif "payload" in fields:
        payload = storage.struct.field("payload")
    else:
        return None
    out: list[dict[str, Any] | None] = []
    for raw in payload:
        if raw is None:
            out.append(None)
            continue
        try:
            p = json.loads(raw)
        except ValueError as e:
            raise CiphertextError(f"column {name!r} holds a corrupt sealed value: {e}") from None
        if not is_gram(p):
            return None  # a format-1 sealed sum: the Rust reader still reads those
        out.append(p)
    return out


def reveal(df: pl.DataFrame, session: Session) -> pl.DataFrame:
    """Replace every sealed column of ``df`` (all groups, all columns) by its plaintext.

    All answer keys are obtained in ONE keyhost request, built and applied in Rust (no per-group
    Python). A refusal raises :class:`~ghostpii.errors.PermissionDenied` naming the missing grant;
    nothing is revealed then.
    """
    if not isinstance(df, pl.DataFrame):
        raise TypeError(f"reveal takes a polars DataFrame, got {type(df).__name__} (use lf.ghost.collect(session))")
    sealed = [n for n, d in df.schema.items() if is_sealed(d)]
    marked = [n for n, d in df.schema.items() if is_sealed_rows(d)]
    if not sealed and not marked:
        return df
    plan = _internal.RevealPlan(session.keyhost_id)
    grams = GramBatch()  # second moments: one descriptor per row set, whatever the statistics
    gram_cols: dict[str, list[tuple[dict[str, Any] | None, int]]] = {}
    for name in sealed:
        payloads = _gram_payloads(name, df[name])
        if payloads is None:
            plan.add_sealed(df[name])
            continue
        entries: list[tuple[dict[str, Any] | None, int]] = []
        for p in payloads:
            if p is not None:
                _check_keyhost(p, session)
                entries.append((p, grams.add(p)))
            else:
                entries.append((None, -1))
        gram_cols[name] = entries
    grams.register(lambda d: plan.add_descriptor(json.dumps(d)))
    row_cols: dict[str, tuple[str, int | None]] = {}
    for name in marked:
        facet, desc = _rows_descriptor(name, df[name], session)
        row_cols[name] = (facet, None if desc is None else plan.add_descriptor(json.dumps(desc[0]), desc[1]))
    if plan.count:
        body, content_type = plan.body()
        response = session.answer_keys_raw(body, plan.count, content_type=content_type)
    else:
        response = b'{"results":[]}'
    cols, keys, answers, refusal = plan.apply(response)
    if refusal is not None:
        reason, message, missing = refusal
        raise error_for(reason, message, status=403, missing_grant=None if missing is None else json.loads(missing))
    new: list[pl.Series] = list(cols)
    if gram_cols:
        results: list[dict[str, Any]] = [{} for _ in range(plan.count)]
        for at, text in answers.items():
            results[at] = json.loads(text)
        for name, gram_entries in gram_cols.items():
            values = [None if p is None else grams.value(slot, results) for p, slot in gram_entries]
            new.append(pl.Series(name, values, dtype=pl.Float64()))
    for name, (facet, i) in row_cols.items():
        new.append(_internal.open_rows(df[name], facet, keys[i] if i is not None else b"").alias(name))
    return df.with_columns(new)
