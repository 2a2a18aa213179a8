"""Second moments at scale: the Gram matrix of 8 encrypted features + target over N rows, end to
end (sealing over ciphertext + ONE answer-key request to a real keyhost + decoding), against
numpy's ``XᵀX`` of ``[X y 1]`` on the same plaintext, in one run; encryption with products in
cells/s; storage added per row by ``products`` for d = 4 and d = 8.

    python benchmarks/moments.py --rows 1000000      # writes benchmarks/moments.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import polars as pl

import ghostpii as gp


def frame(n: int, d: int, seed: int = 5) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    cols = {f"x{i}": rng.integers(0, 1000, n).astype(np.int64) for i in range(d)}
    cols["y"] = rng.integers(0, 100_000, n).astype(np.int64)
    return pl.DataFrame(cols)


def storage_bytes_per_row(enc: pl.DataFrame, plain_cols: list[str]) -> float:
    """Bytes per row of the product fields (every `deg2:*` limb)."""
    total = 0
    for c in plain_cols:
        st = enc[c].ext.storage()
        for f in st.dtype.fields:  # type: ignore[attr-defined]
            if f.name.startswith("deg2"):
                total += st.struct.field(f.name).estimated_size()
    return total / enc.height


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("moments.md"))
    a = ap.parse_args()
    n, d = a.rows, 8
    df = frame(n, d)
    cols = [f"x{i}" for i in range(d)] + ["y"]
    kh = gp.Keyhost.local()
    admin = kh.admin()
    ds = admin.create_dataset("moments_bench")
    schema = {c: gp.integer(bounds=(0, 100_000)) for c in cols}
    t = time.perf_counter()
    enc = gp.encrypt(df, ds, schema, products=[tuple(cols)], show_progress=False)
    t_enc = time.perf_counter() - t
    products = len(cols) * (len(cols) + 1) // 2
    token = admin.grant("bench", ds, [gp.allow.moments(cols)])
    an = gp.connect(kh.url, token, timeout=(5, 600))
    feats = cols[:-1]
    ghost_times, numpy_times = [], []
    for _ in range(a.repeat):
        t = time.perf_counter()
        an.reset_stats()
        m = gp.ml.LinearRegression().fit(enc, features=feats, target="y", session=an)
        ghost_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        z = np.column_stack([df[c].to_numpy().astype(np.float64) for c in cols] + [np.ones(n)])
        g = z.T @ z
        numpy_times.append(time.perf_counter() - t)
    rt = an.stats()["round_trips"]
    assert np.isfinite(g).all() and all(np.isfinite(m.coef_))
    # storage for d = 4 and d = 8 (a small frame suffices: bytes per row are constant)
    small = frame(10_000, 8)
    sizes = {}
    for dd in (4, 8):
        cs = [f"x{i}" for i in range(dd)]
        spec = {c: gp.integer(bounds=(0, 1000)) for c in cs}
        e = gp.encrypt(
            small.select(cs), admin.create_dataset(f"size{dd}"), spec, products=[tuple(cs)], show_progress=False
        )
        sizes[dd] = storage_bytes_per_row(e, cs)
    kh.close()
    gt, nt = min(ghost_times), min(numpy_times)
    res = {
        "rows": n,
        "features": d,
        "ghostpii_gram_fit_s": gt,
        "numpy_xtx_s": nt,
        "ratio": gt / nt,
        "round_trips_per_fit": rt,
        "encrypt_s": t_enc,
        "encrypt_cells_per_s": n * (len(cols) + products) / t_enc,
        "encrypt_products_per_row": products,
        "storage_bytes_per_row": sizes,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)",
    }
    print(json.dumps(res, indent=1))
    a.out.write_text(
        "# Second moments benchmark\n\n"
        f"Machine: {res['machine']}. Rows: {n:,}; 8 encrypted integer features + target, one products group.\n\n"
        "| measure | value |\n|---|---|\n"
        f"| ghostpii Gram matrix + fit, end to end (seal + 1 keyhost request + solve) | {gt:.3f} s |\n"
        f"| numpy `ZᵀZ` of `[X y 1]` (float64, same plaintext) | {nt:.3f} s |\n"
        f"| ratio | {gt / nt:.1f}× |\n"
        f"| keyhost round trips per fit | {rt} |\n"
        f"| encryption with products (9 columns + 45 products) | {t_enc:.2f} s, "
        f"{res['encrypt_cells_per_s']:,.0f} cells/s |\n"
        f"| storage added by products, d = 4 | {sizes[4]:.0f} bytes/row |\n"
        f"| storage added by products, d = 8 | {sizes[8]:.0f} bytes/row |\n"
    )


if __name__ == "__main__":
    main()
