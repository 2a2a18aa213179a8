"""``gp.encrypt``: turn plaintext columns into ``ghostpii.encrypted`` columns."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
import pyarrow as pa

from ghostpii import _internal
from ghostpii.client import Dataset, Session
from ghostpii.dtypes import EncryptedType
from ghostpii.errors import EncryptionError, KeyhostError
from ghostpii.keyed import fuzzy_text, key_facet_keys
from ghostpii.products import check_frame_dtypes, plan_products, products_meta
from ghostpii.progress import progress
from ghostpii.schema import ColumnSpec, precheck_length

__all__ = ["encrypt"]

FORMAT_VERSION = 1
CHUNK_ROWS = 1 << 20


def _as_frame(data: pl.DataFrame | pl.LazyFrame | pa.Table) -> pl.DataFrame:
    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pl.LazyFrame):
        return data.collect()
    if isinstance(data, pa.Table):
        out = pl.from_arrow(data)
        assert isinstance(out, pl.DataFrame)
        return out
    raise TypeError(f"gp.encrypt takes a polars DataFrame/LazyFrame or a pyarrow Table, got {type(data).__name__}")


def _column_request(name: str, spec: ColumnSpec, dtype: pl.DataType) -> dict[str, Any]:
    logical = spec.logical_dtype(name, dtype)
    bounds = spec.scaled_bounds()
    req: dict[str, Any] = {
        "name": name,
        "dtype": logical,
        "scale": spec.decimals,
        "bounds": list(bounds) if bounds is not None else None,
        "facets": list(spec.facets),
    }
    if isinstance(dtype, pl.Datetime):
        req["meta"] = {"time_unit": dtype.time_unit, "time_zone": dtype.time_zone}
    if "ord" in spec.facets:
        req["ord"] = spec.order_domain(logical)
    if spec.join_domain is not None:
        req["join_domain"] = spec.join_domain
    if spec.join_domain_owner is not None:
        req["join_domain_owner"] = spec.join_domain_owner
    return req


def encrypt(
    data: pl.DataFrame | pl.LazyFrame | pa.Table,
    dataset: Dataset,
    schema: Mapping[str, ColumnSpec],
    *,
    products: Sequence[Sequence[str]] | None = None,
    show_progress: bool | None = None,
) -> pl.DataFrame:
    """Encrypt the columns named in ``schema``; other columns stay plaintext.

    Row ids are allocated by the keyhost of ``dataset`` (one per row); column keys are held
    in memory only while encrypting. Nulls stay null (their positions are public). Values
    outside declared bounds raise :class:`EncryptionError` naming the column and first row.
    Nothing is returned half-encrypted: any error leaves the input untouched.

    ``products=[("age", "bmi", "charges")]`` adds the ``deg2`` facet: for each group, the
    product of every pair and the square of every member, masked under keys of their own
    (variance, covariance, correlation and regression over ciphertext; see ``ghostpii.moments``
    and ``ghostpii.ml``). Members need declared bounds small enough that products fit 64 bits.
    """
    df = _as_frame(data)
    if not isinstance(dataset, Dataset):
        raise TypeError("dataset must come from session.create_dataset(...) or session.dataset(...)")
    unknown = [c for c in schema if c not in df.columns]
    if unknown:
        raise EncryptionError(f"schema names columns that are not in the frame: {unknown}; frame has {df.columns}")
    for c, spec in schema.items():
        if not isinstance(spec, ColumnSpec):
            raise TypeError(f"schema[{c!r}] must be gp.integer()/number()/text()/…, got {spec!r}")
    df = df.with_columns(
        pl.col(c).cast(pl.String) for c in schema if df[c].dtype.base_type() in (pl.Categorical, pl.Enum)
    )
    requests_ = {c: _column_request(c, spec, df[c].dtype) for c, spec in schema.items()}
    for c, spec in schema.items():
        _precheck(df[c], spec)
        precheck_length(df[c], spec)
    plans = plan_products(products, schema, {c: r["dtype"] for c, r in requests_.items()})
    check_frame_dtypes(df, plans)
    session = dataset.session
    registered = {c: _register(session, dataset, req) for c, req in requests_.items()}
    prod_reg = {p: _register(session, dataset, p.request()) for p in plans}
    n = df.height
    ids = [r["column_id"] for r in registered.values()] + [r["column_id"] for r in prod_reg.values()]
    rid_start = session.allocate_rids(dataset.name, n, ids) if n else 1
    metas: dict[str, str] = {}
    total_cells = n * len(schema)
    out: dict[str, pl.Series] = {}
    with progress(total_cells, "encrypting", show_progress) as bar:
        for c, spec in schema.items():
            reg, req = registered[c], requests_[c]
            meta = {
                "v": FORMAT_VERSION,
                "keyhost": reg["keyhost_id"],
                "dataset": dataset.name,
                "dataset_id": reg["dataset_id"],
                "column": c,
                "column_id": reg["column_id"],
                "epoch": reg["epoch"],
                "dtype": req["dtype"],
                "scale": spec.decimals,
                "facets": list(spec.facets),
            }
            if req["bounds"] is not None:
                meta["bounds"] = req["bounds"]
            if "ord" in req:
                meta["ord"] = req["ord"]
            if spec.join_domain is not None:
                # the key space, unique on the keyhost: domain names are scoped per owner, and
                # a rotated domain's new key is a new domain id
                jd = reg.get("join_domain") or {}
                meta["join_domain"] = f"{jd.get('owner')}/{jd.get('name')}#{jd.get('id')}" if jd else spec.join_domain
            if spec.fuzzy_space is not None:
                meta["fuzzy_space"] = spec.fuzzy_space
            if (search := spec.search_meta()) is not None:
                meta["search"] = search
            if "meta" in req:
                meta["time_unit"] = req["meta"]["time_unit"]
                if req["meta"]["time_zone"]:
                    meta["time_zone"] = req["meta"]["time_zone"]
            if any(p.a == c for p in plans):
                meta["products"] = products_meta(plans, c, prod_reg)
            meta_json = json.dumps(meta, separators=(",", ":"))
            metas[c] = meta_json
            keys = reg["keys"]
            num_key = _b64(keys.get("num")) if "num" in spec.facets else None
            val_key = _b64(keys.get("val")) if "val" in spec.facets else None
            ord_key = _b64(keys.get("ord")) if "ord" in spec.facets else None
            key_keys = key_facet_keys(keys, spec.facets)
            parts = []
            for off in range(0, max(n, 1), CHUNK_ROWS):
                part = df[c].slice(off, CHUNK_ROWS)
                parts.append(
                    _internal.encrypt_column(
                        part,
                        meta_json,
                        num_key,
                        val_key,
                        rid_start + off,
                        spec.clip,
                        off,
                        ord_key,
                        spec.max_length,
                        key_keys,
                        fuzzy_text(part) if "fuzzy" in spec.facets else None,
                    )
                )
                bar.update(part.len())
            # one contiguous chunk: sealed aggregates read it without a copy (``implode`` of a
            # chunked column concatenates it: ~46 ms per 10M cells here)
            storage = pl.concat(parts, rechunk=True) if len(parts) > 1 else parts[0]
            del num_key, val_key, ord_key, key_keys
            out[c] = storage
    # the deg2 facet: products appended to the storage of each pair's first member
    for c in schema:
        mine = [p for p in plans if p.a == c]
        if mine:
            keys_b = [(p.b, _b64(prod_reg[p]["keys"]["num"])) for p in mine]
            parts = []
            for off in range(0, max(n, 1), CHUNK_ROWS):
                others = [
                    (df[b].slice(off, CHUNK_ROWS), _plain_meta(metas, b, c), schema[b].clip, k) for b, k in keys_b
                ]
                parts.append(
                    _internal.encrypt_products(
                        out[c].slice(off, CHUNK_ROWS),
                        df[c].slice(off, CHUNK_ROWS),
                        metas[c],
                        schema[c].clip,
                        others,
                        rid_start + off,
                        off,
                    )
                )
            out[c] = pl.concat(parts, rechunk=True) if len(parts) > 1 else parts[0]
            del keys_b
    return df.with_columns([s.ext.to(EncryptedType(metas[c], s.dtype)).alias(c) for c, s in out.items()])


def _plain_meta(metas: Mapping[str, str], b: str, a: str) -> str:
    """Metadata of ``b`` as read for its values (its own, or ``a``'s for the square)."""
    return metas[b] if b in metas else metas[a]


def _register(session: Session, dataset: Dataset, req: dict[str, Any]) -> dict[str, Any]:
    try:
        return session.register_column(dataset.name, req)
    except KeyhostError as e:
        if e.reason != "conflict":
            raise
        raise EncryptionError(
            f"{e.message}. A column keeps the settings it was first encrypted with: encrypt it with "
            f"those settings, under another column name, or into a new dataset"
        ) from e


def _first(s: pl.Series, bad: pl.Expr) -> int | None:
    out = s.to_frame("v").select(pl.arg_where(bad).first()).item()
    return None if out is None else int(out)


def _precheck(s: pl.Series, spec: ColumnSpec) -> None:
    """Refuse input that cannot be encrypted before anything is registered on the keyhost:
    NaN/infinite values, values too large for 64-bit fixed point, values outside declared bounds
    (with half a unit of the last decimal of slack for rounding; the exact check runs in Rust).
    Values are quoted in the user's units."""
    if not s.dtype.is_numeric():
        return
    v = pl.col("v")
    limit = 9.223_372_036_854_775e18 / 10.0**spec.decimals
    if s.dtype.is_float():
        bad = _first(s, ~v.is_finite() | (v.abs() >= limit))
    else:
        bad = _first(s, v.cast(pl.Float64).abs() >= limit) if spec.decimals else None
    if bad is not None:
        raise EncryptionError(
            f"column {s.name!r}: value {s[bad]} at row {bad} cannot be encrypted with {spec.decimals} decimals "
            f"(not finite, or too large for 64-bit fixed point); nothing was registered on the keyhost"
        )
    if spec.bounds is None or spec.clip:
        return
    lo, hi = spec.bounds
    slack = 0.5 * 10.0**-spec.decimals
    bad = _first(s, (v < lo - slack) | (v > hi + slack))
    if bad is not None:
        raise EncryptionError(
            f"column {s.name!r}: value {s[bad]} at row {bad} is outside the declared bounds "
            f"[{lo}, {hi}] (pass clip=True to clip instead)"
        )


def _b64(s: str | None) -> bytes | None:
    import base64

    return base64.b64decode(s) if s is not None else None
