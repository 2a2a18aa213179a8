"""Rows per second of ``gp.compute`` end to end (docs/rowwise.md): a local keyhost (real SQLite, HTTP
on loopback, in this process), the analyst's own tfhe keys, one request per batch of rows.

    python benchmarks/rowwise.py [rows]

Prints the key generation and upload times and, per expression, its width, the wall time and
rows/s (client encryption, keyhost FHE evaluation, client decryption together). Not run in CI.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import polars as pl

import ghostpii as gp
from ghostpii.circuit import compile_expression
from ghostpii.rowwise import fhe_client

SYMPTOMS = ["aches", "cough", "fatigue", "sore_throat", "runny_nose"]
EXPRESSIONS = {
    "8-bit predicate x > 50": pl.col("x") > 50,
    "survey (6 columns, 2 inputs)": 3 * pl.col("aches")
    + 2 * pl.col("cough")
    + 4 * pl.col("fatigue")
    + 2 * pl.col("sore_throat")
    + 3 * pl.col("runny_nose")
    + 7 * (pl.col("temperature") > 100.5)
    > 15,
    "distance (x-a)^2 + (y-b)^2 < r^2": (pl.col("x") - 40) ** 2 + (pl.col("y") - 60) ** 2 < 400,
    "x > y (two columns)": pl.col("x") > pl.col("y"),
    "x^2 (value)": pl.col("x") ** 2,
}


def main(rows: int) -> None:
    rng = np.random.default_rng(1)
    cols: dict[str, object] = {s: rng.integers(0, 2, rows) for s in SYMPTOMS}
    cols["temperature"] = np.round(rng.uniform(97.0, 104.0, rows), 1)
    cols["x"] = rng.integers(0, 101, rows)
    cols["y"] = rng.integers(0, 101, rows)
    df = pl.DataFrame(cols)
    schema = {
        **{s: gp.integer(bounds=(0, 1)) for s in SYMPTOMS},
        "temperature": gp.number(decimals=1, bounds=(90, 110)),
        "x": gp.integer(bounds=(0, 100)),
        "y": gp.integer(bounds=(0, 100)),
    }
    with gp.Keyhost.local() as kh:
        admin = kh.admin()
        ds = admin.create_dataset("bench_rowwise")
        enc = gp.encrypt(df, ds, schema, show_progress=False)
        token = admin.grant("bench", ds, [gp.allow.compute(list(schema), max_evaluations=1000, reveal_values=True)])
        an = gp.connect(kh.url, token, timeout=(5.0, 3600.0))
        t = time.perf_counter()
        client = fhe_client(an, upload=False)
        keygen = time.perf_counter() - t
        t = time.perf_counter()
        fhe_client(an)
        upload = time.perf_counter() - t
        print(
            f"rows: {rows}; keys: {keygen:.1f} s; server key {len(client.server_key()) / 1e6:.0f} MB, upload "
            f"and keyhost decompression {upload:.1f} s"
        )
        print("| expression | width | seconds | rows/s |")
        print("|---|---|---|---|")
        for name, expr in EXPRESSIONS.items():
            metas = {c: enc.schema[c].meta() for c in expr.meta.root_names()}  # type: ignore[attr-defined]
            compiled = compile_expression(expr, metas)
            t = time.perf_counter()
            got = gp.compute(enc, expr, session=an, show_progress=False, batch_rows=8)
            dt = time.perf_counter() - t
            assert got.to_list() == df.select(expr).to_series().to_list(), name
            bits = admin.audit(ds).filter(pl.col("operation") == "compute")["params"][0]
            width = __import__("json").loads(bits)["bits"]
            print(f"| {name} ({len(compiled.inputs)} inputs) | {width} | {dt:.1f} | {rows / dt:.1f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 64)
