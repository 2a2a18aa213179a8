"""Answer keys and reveal at memory speed, and queries on Dask (ratios vs plaintext in one run).

    python benchmarks/scale.py            # 10M-row sum, 100k groups over 1M rows, Dask over 10M rows / 16 files
    python benchmarks/scale.py --quick    # 1M-row sum, 10k groups over 100k rows, Dask over 1M rows / 16 files

Writes benchmarks/scale.md. The keyhost's block sums alone (no HTTP):
`cargo run --release -p ghostpii-core --example sum_key_blocks`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

import ghostpii as gp
from ghostpii.reveal import sum_descriptors

OUT = Path(__file__).parent / "scale.md"


def best(f: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def machine() -> str:
    from run import machine as m  # the same machine line as benchmarks/run.py

    return m()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-dask", action="store_true")
    args = ap.parse_args()
    n_sum = 1_000_000 if args.quick else 10_000_000
    n_grp, groups = (100_000, 10_000) if args.quick else (1_000_000, 100_000)
    rows: list[tuple[str, str, str, str]] = []
    rng = np.random.default_rng(5)
    tmp = Path(tempfile.mkdtemp(prefix="ghostpii-scale-"))
    with gp.Keyhost.local(tmp / "kh") as kh:
        admin = kh.admin()
        ds = admin.create_dataset("scale")

        plain = pl.DataFrame({"x": rng.integers(0, 1000, n_sum)})
        enc = gp.encrypt(plain, ds, {"x": gp.integer(bounds=(0, 1000))}, show_progress=False)
        t_plain = best(lambda: plain.select(pl.col("x").sum()))
        q = enc.lazy().select(pl.col("x").ghost.sum())
        q.ghost.collect(admin)  # first use: the keyhost computes its block sums
        t_sum = best(lambda: q.ghost.collect(admin))
        assert q.ghost.collect(admin)["x"][0] == plain["x"].sum()
        rows.append(
            (
                f"revealed sum, {n_sum:,} rows",
                f"{t_sum * 1e3:.1f} ms",
                f"{t_sum / t_plain:,.1f}× plaintext sum() ({t_plain * 1e3:.2f} ms)",
                "≤ 20×",
            )
        )
        (desc,) = sum_descriptors(q.collect()["x"])
        t_key = best(lambda: admin.answer_keys([desc]), repeat=5)
        rows.append(
            (f"keyhost sum key, {n_sum:,} contiguous rids (HTTP, cached blocks)", f"{t_key * 1e3:.2f} ms", "", "≤ 5 ms")
        )

        g = pl.DataFrame({"g": rng.permutation(np.arange(n_grp) % groups), "x": rng.integers(0, 1000, n_grp)})
        genc = gp.encrypt(g, ds, {"x": gp.integer(bounds=(0, 1000))}, show_progress=False)
        t_gplain = best(lambda: g.group_by("g").agg(pl.col("x").sum()))
        gq = genc.lazy().group_by("g").agg(pl.col("x").ghost.sum())
        t_kernel = best(lambda: gq.collect())
        sealed = gq.collect()
        t_reveal = best(lambda: gp.reveal(sealed, admin))
        t_owner = best(lambda: gq.ghost.collect(admin))
        got = gq.ghost.collect(admin).sort("g")
        assert got["x"].to_list() == g.group_by("g").agg(pl.col("x").sum()).sort("g")["x"].to_list()
        token = admin.grant("analyst", ds, [gp.allow.aggregate("x", min_rows=2)])
        assert token is not None
        an = gp.connect(kh.url, token)
        t_an = best(lambda: gq.ghost.collect(an), repeat=1)
        label = f"{groups:,} groups over {n_grp:,} rows"
        ratio = f"× plaintext group_by().sum() ({t_gplain * 1e3:.1f} ms)"
        rows += [
            (f"seal {label} (kernel)", f"{t_kernel * 1e3:.0f} ms", f"{t_kernel / t_gplain:,.1f}{ratio}", ""),
            (f"reveal {label} (one request)", f"{t_reveal * 1e3:.0f} ms", f"{t_reveal / t_gplain:,.1f}{ratio}", ""),
            (f"collect+reveal {label}, owner", f"{t_owner * 1e3:.0f} ms", f"{t_owner / t_gplain:,.1f}{ratio}", "≤ 20×"),
            (
                f"collect+reveal {label}, analyst (audited)",
                f"{t_an * 1e3:.0f} ms",
                f"{t_an / t_gplain:,.1f}{ratio}",
                "",
            ),
        ]
        # merging sealed partials (what gp.dask.collect does on the client): 16 partials per group
        m_groups = groups // 5
        mg = pl.DataFrame({"g": rng.integers(0, m_groups, 16 * m_groups), "x": rng.integers(0, 1000, 16 * m_groups)})
        menc = gp.encrypt(mg, ds, {"x": gp.integer(bounds=(0, 1000))}, show_progress=False)
        step = menc.height // 16
        parts = [
            menc.slice(i * step, step)
            .lazy()
            .group_by("g")
            .agg(pl.col("x").ghost.sum())
            .collect()
            .with_columns(pl.col("x").ext.storage())
            for i in range(16)
        ]
        t_merge = best(lambda: gp.dask.merge_partials(parts, ["g"], ["x"]))
        plain_parts = [mg.slice(i * step, step).group_by("g").agg(pl.col("x").sum()) for i in range(16)]
        t_mplain = best(lambda: pl.concat(plain_parts).group_by("g").agg(pl.col("x").sum()))
        rows.append(
            (
                f"merge 16 sealed partials of {m_groups:,} groups (client side of gp.dask.collect)",
                f"{t_merge * 1e3:.0f} ms",
                f"{t_merge / t_mplain:,.1f}× merging plaintext partial sums ({t_mplain * 1e3:.1f} ms)",
                "",
            )
        )
        for r in rows:
            print(r, flush=True)

        if not args.no_dask:
            from dask.distributed import Client, LocalCluster

            n_files, per = 16, n_sum // 16
            files = []
            for i in range(n_files):
                part = pl.DataFrame({"g": rng.integers(0, 100, per), "x": rng.integers(0, 1000, per)})
                p = tmp / f"part{i:02}.parquet"
                gp.encrypt(part, ds, {"x": gp.integer(bounds=(0, 1000))}, show_progress=False).write_parquet(p)
                files.append(str(p))
            dq = pl.scan_parquet(files).group_by("g").agg(pl.col("x").ghost.sum())
            t_one = best(lambda: dq.ghost.collect(admin), repeat=2)
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
                with Client(cl) as client:
                    gp.dask.collect(dq, admin, client)  # warm the workers
                    t_two = best(lambda: gp.dask.collect(dq, admin, client), repeat=2)
                    a = gp.dask.collect(dq, admin, client).sort("g")
            assert a.equals(dq.ghost.collect(admin).sort("g"))
            rows += [
                (f"query over {n_sum:,} rows in {n_files} files, 1 process", f"{t_one:.2f} s", "", ""),
                (
                    "same on a 2-worker LocalCluster (gp.dask.collect)",
                    f"{t_two:.2f} s",
                    f"{t_one / t_two:.2f}× speed-up",
                    "",
                ),
            ]
            print(rows[-2:], flush=True)
    lines = [
        "# Answer keys and reveal at memory speed; queries on Dask",
        "",
        f"Machine: {machine()}",
        "",
        "| measure | time | ratio | target |",
        "|---|---:|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
