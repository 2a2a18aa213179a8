"""Row-wise computation over ciphertext: ``gp.compute(frame, expr, session=an)`` (``docs/rowwise.md``).

The analyst holds, per row, masked cells ``X + m``; the keyhost holds the masks ``m``. The
expression is compiled into a circuit (:mod:`ghostpii.circuit`) whose inputs are linear forms
over the encrypted columns: the Rust kernel combines the analyst's masked cells of each form
(``ScoreRows``), keeps the low ``bits`` bits, adds the form's public offset, and encrypts the
residues under the analyst's OWN tfhe key (``_internal.FheClient``, generated once per session;
its server key is uploaded once). The keyhost subtracts its masks homomorphically, evaluates the
circuit, and returns the outputs encrypted under the analyst's key; only the analyst decrypts
them. The keyhost never sees a value; the analyst sees only the outputs its ``compute`` grant
reveals (predicates, or integer values with ``reveal_values``).

Rows go in batches (one request each, ``batch_rows`` rows), with a progress bar on a terminal.
"""

from __future__ import annotations

import json
import sys
import weakref
from typing import Any

import numpy as np
import polars as pl

from ghostpii import _internal, _protocol, frames
from ghostpii.circuit import Compiled, compile_expression
from ghostpii.client import Session
from ghostpii.dtypes import is_encrypted
from ghostpii.errors import CiphertextError, GhostError, KeyhostError, UnsupportedOperation
from ghostpii.progress import progress

__all__ = ["compute", "fhe_client"]

_CLIENTS: weakref.WeakKeyDictionary[Session, Any] = weakref.WeakKeyDictionary()
_UPLOADED: weakref.WeakKeyDictionary[Session, bool] = weakref.WeakKeyDictionary()


def fhe_client(session: Session, *, upload: bool = True) -> Any:
    """The session's FHE client (its own tfhe keys, generated on first use: a few seconds), its
    server key uploaded to the keyhost once (about 106 MB)."""
    c = _CLIENTS.get(session)
    if c is None:
        c = _internal.FheClient()
        _CLIENTS[session] = c
    if upload and not _UPLOADED.get(session):
        _upload(session, c)
    return c


def _upload(session: Session, c: Any) -> None:
    r = session._send("PUT", "/v1/fhe/server-key", data=bytes(c.server_key()), content_type="application/octet-stream")
    if r.status_code >= 400:
        session._raise_http(r)
    _UPLOADED[session] = True


def _check_columns(df: pl.DataFrame, names: list[str], session: Session) -> dict[str, dict[str, Any]]:
    metas: dict[str, dict[str, Any]] = {}
    for c in names:
        if c not in df.schema:
            raise UnsupportedOperation(f"gp.compute(): the frame has no column {c!r}")
        if not is_encrypted(df.schema[c]):
            continue
        m: dict[str, Any] = df.schema[c].meta()  # type: ignore[attr-defined]
        if m.get("keyhost") != session.keyhost_id:
            raise CiphertextError(
                f"column {c!r} was encrypted under keyhost {m.get('keyhost')!r}, but this session is connected "
                f"to keyhost {session.keyhost_id!r}"
            )
        if "num" not in m.get("facets", []):
            raise UnsupportedOperation(f"gp.compute(): column {c!r} has no 'num' facet (text cannot be computed on)")
        metas[c] = m
    datasets = {m["dataset_id"] for m in metas.values()}
    if len(datasets) > 1:
        raise UnsupportedOperation("gp.compute() combines encrypted columns of one dataset")
    return metas


def _residues(sub: pl.DataFrame, compiled: Compiled, bits: int) -> tuple[bytes, bytes, int]:
    """The rid set of the valid rows of ``sub`` and, per row and input, the analyst's residue."""
    cols: list[np.ndarray[Any, np.dtype[np.int64]]] = []
    rid_set = b""
    rows = 0
    for i, inp in enumerate(compiled.inputs):
        try:
            sr = _internal.ScoreRows([sub[c] for c in inp["columns"]], inp["weights"])
        except GhostError as e:
            if type(e) is GhostError:
                raise UnsupportedOperation(f"gp.compute(): {e}") from None
            raise
        cols.append(_add_offset(np.frombuffer(sr.residues(bits), dtype="<i8"), int(inp["offset"]), bits))
        if i == 0:
            rid_set, rows = bytes(sr.rid_set()), int(sr.rows)
    matrix = np.stack(cols, axis=1) if cols else np.zeros((0, 0), dtype=np.int64)
    return rid_set, matrix.astype("<i8").tobytes(), rows


def _add_offset(r: np.ndarray[Any, np.dtype[np.int64]], offset: int, bits: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """``r + offset`` as signed ``bits``-bit integers (wrapping, vectorised)."""
    mod = 1 << bits
    u = r.astype(np.uint64) + np.uint64(offset % mod)  # wraps mod 2^64
    if bits < 64:
        u &= np.uint64(mod - 1)
        return np.where(u >= np.uint64(mod >> 1), u.astype(np.int64) - mod, u.astype(np.int64))
    return u.view(np.int64)


def _send(session: Session, request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    blobs: list[bytes] = []

    def mark(v: Any) -> Any:
        if isinstance(v, bytes):
            blobs.append(v)
            return {"$blob": len(blobs) - 1, "len": len(v)}
        return v

    head = json.dumps({k: mark(v) for k, v in request.items()}, separators=(",", ":")).encode()
    body = _internal.frame_encode(head, blobs)
    r = session._send("POST", "/v1/compute", data=bytes(body), content_type=frames.MEDIA_TYPE, accept=frames.MEDIA_TYPE)
    if r.status_code >= 400:
        session._raise_http(r)
    answer_head, answer_blobs = _internal.frame_decode(r.content)
    answer: dict[str, Any] = json.loads(answer_head)
    return answer, bytes(answer_blobs[answer["results"]["$blob"]])


def compute(
    frame: pl.LazyFrame | pl.DataFrame,
    expr: pl.Expr,
    *,
    session: Session,
    name: str | None = None,
    batch_rows: int = 64,
    show_progress: bool | None = None,
) -> pl.Series:
    """Evaluate ``expr`` per row over the frame's encrypted ``num`` columns under FHE.

    Returns a Series with one value per row of ``frame`` (null where an input is null): Boolean
    for a predicate (use it in ``frame.filter(...)``), else the integer value (Int64, or Float64
    for fixed-point results), which needs a ``compute`` grant with ``reveal_values``. Supported:
    ``+ - *`` (by constants and between values), division of a linear part by a constant,
    comparisons, ``& | ~``, ``when/then/otherwise``, ``abs``, ``min/max_horizontal``, ``clip``,
    ``pow`` 2 to 4. Each row of each column counts one evaluation against the grant's
    ``max_evaluations``.
    """
    if not isinstance(expr, pl.Expr):
        raise TypeError(f"gp.compute() takes a polars expression, got {type(expr).__name__}")
    names = list(dict.fromkeys(expr.meta.root_names()))
    if isinstance(frame, pl.LazyFrame):
        df = frame.select(names).collect()
    elif isinstance(frame, pl.DataFrame):
        df = frame.select(names)
    else:
        raise TypeError(f"gp.compute() takes a polars LazyFrame or DataFrame, got {type(frame).__name__}")
    if batch_rows < 1:
        raise ValueError("batch_rows must be at least 1")
    metas = _check_columns(df, names, session)
    compiled = compile_expression(expr, metas)
    ids = {c: (int(m["column_id"]), int(m["epoch"])) for c, m in metas.items()}
    circuit = compiled.circuit(ids)
    bounds = {int(m["column_id"]): tuple(int(b) for b in m["bounds"]) for m in metas.values() if m.get("bounds")}
    try:
        bits = int(_internal.circuit_bits(json.dumps(circuit), bounds))
    except GhostError as e:
        if type(e) is GhostError:
            raise UnsupportedOperation(str(e)) from None
        raise
    out_name = name or (expr.meta.output_name(raise_if_undetermined=False) or "compute")
    used = sorted({c for i in compiled.inputs for c in i["columns"]})
    first = used[0]
    valid = df.select(pl.all_horizontal([pl.col(c).is_not_null() for c in used])).to_series()
    rid = df[first].ext.storage().struct.field("rid")
    for c in used[1:]:
        other = df[c].ext.storage().struct.field("rid")
        if not ((other == rid) | ~valid).all():
            raise UnsupportedOperation(
                f"gp.compute(): columns {first!r} and {c!r} were encrypted in different gp.encrypt calls (their row "
                f"ids differ), so they cannot be combined row by row"
            )
    distinct = rid.filter(valid).unique().sort()
    dataset_id = int(metas[first]["dataset_id"])
    client = fhe_client(session)
    text = str(expr)
    results: list[np.ndarray[Any, Any]] = []
    show = sys.stderr.isatty() if show_progress is None else show_progress
    with progress(len(distinct), f"gp.compute ({bits}-bit FHE)", show=show, unit="row") as bar:
        for start in range(0, len(distinct), batch_rows):
            batch = distinct.slice(start, batch_rows)
            sub = df.filter(valid & rid.is_in(batch.implode()))
            rid_set, residues, rows = _residues(sub, compiled, bits)
            if rows != len(batch):
                raise CiphertextError(f"gp.compute(): {rows} rows of a batch of {len(batch)} rids have their inputs")
            cts = bytes(client.encrypt(bits, residues))
            request = _protocol.compute(dataset_id, rid_set, circuit, bits, text, cts)
            try:
                answer, blob = _send(session, dict(request))
            except KeyhostError as e:
                if e.reason != "fhe_key_missing":
                    raise
                _upload(session, client)  # expired or the keyhost restarted: once more
                answer, blob = _send(session, dict(request))
            if answer.get("output") == "bool":
                results.append(np.frombuffer(client.decrypt_bools(blob, rows), dtype=np.uint8).astype(bool))
            else:
                results.append(np.frombuffer(client.decrypt_ints(blob, rows, bits), dtype="<i8"))
            bar.update(rows)
    values = np.concatenate(results) if results else np.zeros(0, dtype=bool if compiled.boolean else np.int64)
    if compiled.boolean:
        col = pl.Series("v", values, dtype=pl.Boolean)
    elif compiled.scale:
        col = pl.Series("v", values.astype(np.float64) / 10**compiled.scale, dtype=pl.Float64)
    else:
        col = pl.Series("v", values, dtype=pl.Int64)
    lookup = pl.DataFrame({"rid": distinct, "v": col})
    joined = pl.DataFrame({"rid": rid, "valid": valid}).with_row_index("i").join(lookup, on="rid", how="left")
    out = joined.sort("i").select(pl.when(pl.col("valid")).then(pl.col("v")).otherwise(None)).to_series()
    return out.alias(out_name)
