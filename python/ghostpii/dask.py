"""``gp.dask.collect(lf, session, client)``: one ghostpii query over many encrypted Parquet files,
partition-parallel on a Dask cluster, revealed with ONE keyhost request.

The client resolves the plan's comparison tokens in one request, splits the plan's Parquet scan
into one task per file group, and each worker runs the query with the ghostpii plugin on its files
(no keyhost, no keys: only the tokens shipped with the task). Workers return *sealed partials*
(docs/sealed-partials.md): per group, masked sums and row-id multisets. The client merges them in
Rust (masked sums add mod 2^128, multisets add) and reveals the merged values with one answer-key
request, so DP noise, grants, minimum row counts and the linear audit apply once, to the merged
result, exactly as for a single-process query.

Supported plans: a (filtered, projected) scan of Parquet files ending in ``group_by(keys).agg(...)``
of sealed aggregates, or in a ``select`` of sealed aggregates. Plaintext aggregates other than the
group keys cannot be merged without knowing how, and are refused. Sealed quantiles merge by
putting the order cells of a group's partials together (their row and null counts added); the
client then runs the quantile search on the merged cells, one keyhost request per round, within
the 8 round trips of a query, as a single-process query does. Second moments (``ghost.var``,
``gp.cov``, the Gram matrices of model fits) merge like sums.
``ghost.key()`` pseudonyms work: the client asks the pads of every non-null row of the key
columns in the files in one request and ships each task its rows' pads and one pseudonym key.
"""

from __future__ import annotations

import copy
import io
import json
import secrets
import threading
import warnings
from typing import Any

import polars as pl
from polars.plugins import register_plugin_function

from ghostpii import _internal
from ghostpii._plugin import PLUGIN_PATH
from ghostpii.client import Session
from ghostpii.dtypes import SealedQuantileType, SealedType, is_sealed, is_sealed_quantile
from ghostpii.errors import UnsupportedOperation, ghost_errors
from ghostpii.keyed import pads_descriptor
from ghostpii.plan_guard import check_plan, reveal
from ghostpii.tokens import PlannedTokens, plan_tokens

__all__ = ["collect", "merge_quantiles", "merge_sealed", "partial_plans"]


def merge_sealed(expr: pl.Expr | str) -> pl.Expr:
    """Aggregate the sealed partials of a group into one sealed value (nothing is revealed).

    Every group is merged in ONE kernel call over ``expr.implode()`` (one list of partials per
    group), in parallel; not one call per group."""
    e = pl.col(expr) if isinstance(expr, str) else expr
    out = register_plugin_function(
        plugin_path=PLUGIN_PATH, function_name="ghost_merge_groups", args=e.implode(), is_elementwise=True
    )
    return out.ext.to(SealedType())


def merge_quantiles(expr: pl.Expr | str) -> pl.Expr:
    """One sealed quantile per group from its partials: the order cells of every partial, their
    row and null counts added (nothing is revealed; the search runs on the merged cells). Every
    group is merged in ONE kernel call over ``expr.implode()``."""
    e = pl.col(expr) if isinstance(expr, str) else expr
    out = register_plugin_function(
        plugin_path=PLUGIN_PATH,
        function_name="ghost_merge_quantile_groups",
        args=e.implode(),
        is_elementwise=True,
    )
    return out.ext.to(SealedQuantileType())


def _dsl(node: Any) -> Any:
    """The plan without Polars' cached resolutions: ``{"IR": {"dsl": plan, ...}}`` (what a plan
    becomes once its schema was resolved) is replaced by ``plan``, everywhere."""
    if isinstance(node, dict):
        ir = node.get("IR")
        if len(node) == 1 and isinstance(ir, dict) and "dsl" in ir:
            return _dsl(ir["dsl"])
        return {k: _dsl(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_dsl(v) for v in node]
    return node


def _plan_json(lf: pl.LazyFrame) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Polars deprecates the JSON format; it is read back by the same build
        return _dsl(json.loads(lf.serialize(format="json")))  # type: ignore[no-any-return]


def _scans(node: Any, out: list[dict[str, Any]]) -> None:
    if isinstance(node, dict):
        scan = node.get("Scan")
        if isinstance(scan, dict):
            out.append(scan)
        for v in node.values():
            _scans(v, out)
    elif isinstance(node, list):
        for v in node:
            _scans(v, out)


def _keys(plan: dict[str, Any]) -> list[str] | None:
    """The group keys of a plan ending in ``group_by(...).agg(...)`` (``None`` for other plans)."""
    gb = plan.get("GroupBy")
    if not isinstance(gb, dict):
        return None
    names: list[str] = []
    for k in gb.get("keys", []):
        if not (isinstance(k, dict) and isinstance(k.get("Column"), str)):
            raise UnsupportedOperation(
                "gp.dask.collect groups by plain columns only (group_by('a', 'b')); compute derived keys "
                "in a with_columns before the group_by"
            )
        names.append(k["Column"])
    return names


def _key_columns(node: Any, out: list[str]) -> None:
    """The columns whose ``ghost.key()`` pseudonyms the plan computes."""
    if isinstance(node, dict):
        f = node.get("Function")
        fn = f.get("function") if isinstance(f, dict) else None
        ffi = fn.get("FfiPlugin") if isinstance(fn, dict) else None
        if isinstance(ffi, dict) and ffi.get("symbol") == "ghost_key":
            for i in f.get("input", []):  # type: ignore[union-attr]
                if not (isinstance(i, dict) and isinstance(i.get("Column"), str)):
                    raise UnsupportedOperation(
                        "gp.dask.collect computes ghost.key() of columns as they are stored: write "
                        "pl.col(name).ghost.key()"
                    )
                if i["Column"] not in out:
                    out.append(i["Column"])
        for v in node.values():
            _key_columns(v, out)
    elif isinstance(node, list):
        for v in node:
            _key_columns(v, out)


def partial_plans(lf: pl.LazyFrame, files_per_task: int = 1) -> tuple[list[str], list[str]]:
    """The plan of ``lf`` split by its Parquet files: (one serialized plan per task, group keys)."""
    plan = _plan_json(lf)
    scans: list[dict[str, Any]] = []
    _scans(plan, scans)
    paths = [s.get("sources", {}).get("Paths") for s in scans]
    if len(scans) != 1 or not isinstance(paths[0], list) or not paths[0]:
        raise UnsupportedOperation(
            "gp.dask.collect runs a query over ONE Parquet scan (pl.scan_parquet([...files])); this plan "
            f"has {len(scans)} scan(s): join or concatenate the inputs into one set of files first"
        )
    keys = _keys(plan) or []
    schema = lf.collect_schema()
    loose = [n for n, d in schema.items() if not (is_sealed(d) or is_sealed_quantile(d)) and n not in keys]
    if loose:
        raise UnsupportedOperation(
            f"gp.dask.collect merges sealed aggregates per group; the column(s) {loose} are neither sealed "
            "nor group keys, so their partials cannot be merged (use ghost.sum()/ghost.mean()/ghost.quantile(), "
            "or compute plaintext aggregates in a separate query)"
        )
    files = paths[0]
    tasks: list[str] = []
    for i in range(0, len(files), files_per_task):
        scans[0]["sources"]["Paths"] = files[i : i + files_per_task]
        tasks.append(json.dumps(plan))
    scans[0]["sources"]["Paths"] = copy.copy(files)
    return tasks, keys


# One query's shipped pads at a time per worker process (the kernels read them process-wide).
_SHIPPED = threading.Lock()


def _run_partition(plan: str, tokens: PlannedTokens, shipped: Shipped | None = None) -> bytes:
    """On a worker: run one partial plan with the shipped tokens (and, for ``ghost.key()``, the
    query's pseudonym key and the pads of this task's rows); Arrow IPC of its sealed partials
    (sealed columns as their storage structs)."""
    import ghostpii  # noqa: F401  (registers the extension types and the plugin in this process)

    tokens.install()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lf = pl.LazyFrame.deserialize(io.StringIO(plan), format="json")
    if shipped is None:
        df = lf.collect()
    else:
        key, columns = shipped
        with _SHIPPED:
            try:
                for meta, rids, pads in columns:
                    _internal.install_shipped_pads(meta, rids, pads, key)
                df = lf.collect()
            finally:
                _internal.clear_shipped_pads()
    df = df.with_columns(
        [df[n].ext.storage().alias(n) for n, d in df.schema.items() if is_sealed(d) or is_sealed_quantile(d)]
    )
    buf = io.BytesIO()
    df.write_ipc(buf)
    return buf.getvalue()


# per task: the query's pseudonym key and, per key column, (metadata, rids, pads) of its rows
Shipped = tuple[bytes, list[tuple[str, bytes, bytes]]]


def _task_files(lf: pl.LazyFrame, files_per_task: int) -> list[list[str]]:
    scans: list[dict[str, Any]] = []
    _scans(_plan_json(lf), scans)
    # a path is serialised as a string or as {"inner": path}, depending on the Polars build
    files = [p["inner"] if isinstance(p, dict) else p for p in scans[0]["sources"]["Paths"]]
    return [files[i : i + files_per_task] for i in range(0, len(files), files_per_task)]


def _ship_pads(groups: list[list[str]], columns: list[str], session: Session) -> list[Shipped]:
    """The pads of every non-null row of the key columns in the scanned files, in ONE keyhost
    request (workers filter locally, so the client cannot know which rows they keep), split by
    task, with one fresh pseudonym key for all workers of the query."""
    # each task's key columns, read once; all tasks' rows together for the one request
    per_task = [[pl.read_parquet(g, columns=[c])[c] for c in columns] for g in groups]
    wanted = [_internal.key_rids(pl.concat([t[i] for t in per_task])) for i in range(len(columns))]
    descriptors = [pads_descriptor({**json.loads(meta), "facet": "group"}, rids) for meta, rids in wanted]
    results = session.answer_keys(descriptors)
    key = secrets.token_bytes(16)
    out: list[Shipped] = []
    for task in per_task:
        cols = []
        for series, (meta, rids), r in zip(task, wanted, results, strict=True):
            _, mine = _internal.key_rids(series)
            cols.append((meta, mine, _internal.slice_pads(rids, r["pads"], mine)))
        out.append((key, cols))
    return out


def merge_partials(
    parts: list[pl.DataFrame], keys: list[str], sealed: list[str], quantiles: list[str] | None = None
) -> pl.DataFrame:
    """One frame of sealed values from the workers' partials: per group, each sealed column
    (and each sealed quantile) merged."""
    quantiles = quantiles or []
    df = pl.concat(parts, how="vertical")
    df = df.with_columns(
        [pl.col(n).ext.to(SealedType()) for n in sealed] + [pl.col(n).ext.to(SealedQuantileType()) for n in quantiles]
    )
    by_name = {**{n: merge_sealed(n) for n in sealed}, **{n: merge_quantiles(n) for n in quantiles}}
    aggs = [by_name[n] for n in df.columns if n in by_name]
    if keys:
        return df.group_by(keys, maintain_order=True).agg(aggs)
    return df.select(aggs)


def collect(lf: pl.LazyFrame, session: Session, client: Any, *, files_per_task: int = 1) -> pl.DataFrame:
    """Run ``lf`` over its Parquet files on the Dask cluster of ``client`` (a
    ``dask.distributed.Client``) and reveal the merged result with ONE answer-key request.

    The result equals ``lf.ghost.collect(session)`` (row order of groups aside). Tokens for the
    plan's comparisons are fetched once, before; workers never talk to the keyhost.
    """
    check_plan(lf)
    with ghost_errors():
        tasks, keys = partial_plans(lf, files_per_task)
        schema = lf.collect_schema()
        sealed = [n for n, d in schema.items() if is_sealed(d)]
        quantiles = [n for n, d in schema.items() if is_sealed_quantile(d)]
        # every token the plan needs, not only those missing here: the workers have none
        _internal.clear_tokens()
        _internal.clear_match_tokens()
        tokens = plan_tokens(lf, session)
        columns: list[str] = []
        _key_columns(_plan_json(lf), columns)
        if columns:
            shipped = _ship_pads(_task_files(lf, files_per_task), columns, session)
            futures = client.map(_run_partition, tasks, [tokens] * len(tasks), shipped, pure=False)
        else:
            futures = client.map(_run_partition, tasks, tokens=tokens, pure=False)
        parts = [pl.read_ipc(io.BytesIO(b)) for b in client.gather(futures)]
        return reveal(merge_partials(parts, keys, sealed, quantiles), session)
