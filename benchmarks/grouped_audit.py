"""Grouped reveals under an exact grant (linear audit) vs the owner (not audited) vs plaintext.

    python benchmarks/grouped_audit.py            # 1M rows; 1k, 10k, 100k groups
    python benchmarks/grouped_audit.py --quick    # 100k rows; 1k, 10k groups
    python benchmarks/grouped_audit.py --groups 100000   # 1M rows; the 100k-group case only

Writes benchmarks/grouped_audit.md. The audit's own cost, without HTTP or database, is printed by
`cargo run --release -p ghostpii-keyhost --example linear_audit_cost` (benchmarks/linear_audit.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

import ghostpii as gp

OUT = Path(__file__).parent / "grouped_audit.md"


def timed(f: object) -> float:
    t = time.perf_counter()
    f()  # type: ignore[operator]
    return time.perf_counter() - t


def machine() -> str:
    from run import machine as m  # the same machine line as benchmarks/run.py

    return m()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--groups", type=int, nargs="*", help="group counts to run (default: 1k, 10k, 100k)")
    args = ap.parse_args()
    n = 100_000 if args.quick else 1_000_000
    group_counts = args.groups or ([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    rng = np.random.default_rng(3)
    rows = []
    with gp.Keyhost.local(Path(tempfile.mkdtemp(prefix="ghostpii-audit-")) / "kh") as kh:
        admin = kh.admin()
        for g in group_counts:
            ds = admin.create_dataset(f"groups{g}")
            # every group has n / g ≥ 10 rows, scattered over the table
            plain = pl.DataFrame({"g": rng.permutation(np.arange(n) % g), "x": rng.integers(0, 1000, n)})
            enc = gp.encrypt(plain, ds, {"x": gp.integer(bounds=(0, 1000))}, show_progress=False)
            token = admin.grant(f"an{g}", ds, [gp.allow.aggregate("x", min_rows=2)])
            assert token is not None
            an = gp.connect(kh.url, token)
            q = enc.lazy().group_by("g").agg(pl.col("x").ghost.sum())
            t_plain = min(timed(lambda: plain.group_by("g").agg(pl.col("x").sum())) for _ in range(3))
            t_owner = timed(lambda: q.ghost.collect(admin))
            t_an = timed(lambda: q.ghost.collect(an))  # first time: every group is new to the audit
            got = q.ghost.collect(an).sort("g")  # again: all dependent, answered
            want = plain.group_by("g").agg(pl.col("x").sum()).sort("g")
            assert got["x"].to_list() == want["x"].to_list()
            rows.append(
                f"| {n:,} rows, {g:,} groups | {t_plain * 1e3:.1f} ms | {t_owner:.3f} s | {t_an:.3f} s "
                f"| {t_an - t_owner:+.3f} s | {(t_an - t_owner) / g * 1e6:.1f} µs "
                f"| {t_owner / t_plain:,.0f}× | {t_an / t_plain:,.0f}× |"
            )
            print(rows[-1], flush=True)
    lines = [
        "# Grouped reveals under the disclosure audit",
        "",
        f"Machine: {machine()}",
        "",
        "End to end (`lf.ghost.collect`: kernel, one keyhost request, reveal). The owner's answers are",
        "not audited; the analyst's exact grant (`min_rows=2`) goes through the disclosure audit (atoms",
        "of at least min_rows rows, one check per group, all groups decided together), so the difference",
        "is the audit's cost inside the keyhost transaction; per check = that difference / groups. All",
        "figures of a row come from one run on the same data; the machine is shared with other builds.",
        "",
        "| data | plaintext group_by().sum() | owner (no audit) | analyst (audited) | audit cost "
        "| audit cost per check | owner vs plaintext | analyst vs plaintext |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
