"""ghostpii benchmarks: one command, one table (benchmarks/results.md).

    python benchmarks/run.py            # 1M and 10M rows
    python benchmarks/run.py --quick    # 100k and 1M rows
    python benchmarks/run.py --sizes 20000 --out /tmp/bench   # a small check of the code

Ratios are against plaintext Polars on the same data, measured in the same run. Beside the
table it writes PNG plots (plots.py): throughput.png and ratios.png per size, and
dp_error.png, the error of DP sums against ε through a real keyhost (dp_error.py).
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

import ghostpii as gp
from ghostpii.reveal import sum_descriptors

sys.path.insert(0, str(Path(__file__).parent))
import dp_error  # noqa: E402
import plots  # noqa: E402

HERE = Path(__file__).parent
DP_EPSILONS = [0.1, 0.3, 1.0, 3.0, 10.0]


def best(f: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, polars {pl.__version__}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", help="comma-separated row counts (overrides --quick)")
    ap.add_argument("--out", type=Path, default=HERE, help="folder for results.md and the plots")
    ap.add_argument("--dp-groups", type=int, default=200, help="DP answers per ε")
    args = ap.parse_args()
    sizes = [100_000, 1_000_000] if args.quick else [1_000_000, 10_000_000]
    if args.sizes:
        sizes = [int(s.replace("_", "")) for s in args.sizes.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str, str]] = []
    series: plots.Series = {}
    rng = np.random.default_rng(7)
    work = Path(tempfile.mkdtemp(prefix="ghostpii-bench-"))
    with gp.Keyhost.local(work / "kh") as kh:
        admin = kh.admin()
        ds = admin.create_dataset("bench")
        for n in sizes:
            plain = pl.DataFrame({"income": rng.uniform(0, 1_000_000, n).round(2)})
            spec = {"income": gp.number(decimals=2, bounds=(0, 1_000_000))}
            t_enc = best(lambda: gp.encrypt(plain, ds, spec, show_progress=False), repeat=1 if n >= 10**7 else 2)
            rows.append(
                (f"encrypt num, {n:,} rows", f"{t_enc:.3f} s", f"{n / t_enc / 1e6:.2f} M cells/s", "target ≥ 2 M/s")
            )
            enc = gp.encrypt(plain, ds, spec, show_progress=False)
            path = work / f"enc_{n}.parquet"
            enc.write_parquet(path)
            plain_path = work / f"plain_{n}.parquet"
            plain.write_parquet(plain_path)
            mem = enc.lazy()
            t_plain_sum = best(lambda: plain.select(pl.col("income").sum()))
            t_sum = best(lambda: mem.select(pl.col("income").ghost.sum()).ghost.collect(admin))
            t_mean = best(lambda: mem.select(pl.col("income").ghost.mean()).ghost.collect(admin))
            rows.append(
                (
                    f"revealed sum, {n:,} rows (in memory)",
                    f"{t_sum:.3f} s",
                    f"{t_sum / t_plain_sum:,.0f}× plaintext sum ({t_plain_sum * 1e3:.2f} ms)",
                    "target ≤ 1 s at 10M",
                )
            )
            rows.append(
                (
                    f"revealed mean, {n:,} rows (in memory)",
                    f"{t_mean:.3f} s",
                    f"{t_mean / t_plain_sum:,.0f}× plaintext sum",
                    "",
                )
            )
            t_plain_scan = best(lambda: pl.scan_parquet(plain_path).select(pl.col("income").sum()).collect())
            t_scan = best(lambda: pl.scan_parquet(path).select(pl.col("income").ghost.sum()).ghost.collect(admin))
            rows.append(
                (
                    f"revealed sum from Parquet, {n:,} rows",
                    f"{t_scan:.3f} s",
                    f"{t_scan / t_plain_scan:,.1f}× plaintext scan+sum ({t_plain_scan * 1e3:.1f} ms)",
                    "",
                )
            )
            sealed = mem.select(pl.col("income").ghost.sum()).collect()
            desc = sum_descriptors(sealed["income"])[0]
            t_key = best(lambda: admin.answer_keys([desc]))
            rows.append(
                (
                    f"keyhost sum key, {n:,} rids (HTTP round trip)",
                    f"{t_key:.3f} s",
                    f"{n / t_key / 1e6:.1f} M rids/s",
                    "target ≥ 20 M/s",
                )
            )
            size = len(base64.b64decode(desc["rids"]))
            rows.append((f"rid set on the wire, {n:,} rids", f"{size:,} bytes", "", ""))
            series[n] = {
                "encrypt_mcells": n / t_enc / 1e6,
                "key_mrids": n / t_key / 1e6,
                "sum_ratio": t_sum / t_plain_sum,
                "mean_ratio": t_mean / t_plain_sum,
                "scan_ratio": t_scan / t_plain_scan,
            }
        # comparisons on the ord facet: older_than over encrypted birth dates
        small = args.quick or args.sizes
        n_dates = sizes[-1] if small else max(sizes[-1] // 10, 1_000_000)
        days = rng.integers(-25_000, 20_000, n_dates)
        dates = pl.DataFrame({"dob": pl.Series(days, dtype=pl.Int32).cast(pl.Date)})
        spec_d = {"dob": gp.date(compare=True)}
        t_ord = best(lambda: gp.encrypt(dates, ds, spec_d, show_progress=False), repeat=1)
        rate = f"{n_dates / t_ord / 1e3:,.0f} k cells/s"
        rows.append((f"encrypt date with ord+num, {n_dates:,} rows", f"{t_ord:.3f} s", rate, "target ≥ 100 k/s (ord)"))
        enc_d = gp.encrypt(dates, ds, spec_d, show_progress=False)
        st = enc_d["dob"].ext.storage().struct
        ord_bytes = st.field("ord").bin.size().mean()
        rows.append(("bytes per encrypted date (ord cell)", f"{ord_bytes:.0f} B", "+ 24 B rid/num limbs", ""))
        as_of = __import__("datetime").date(2025, 1, 1)
        cutoff = as_of.replace(year=2004)
        lf = enc_d.lazy()
        q = lf.select(pl.col("dob").ghost.older_than(21, as_of=as_of).sum())
        q.ghost.collect(admin)  # warm the token cache
        t_cmp = best(lambda: q.collect())
        t_plain_cmp = best(lambda: dates.lazy().select((pl.col("dob") <= cutoff).sum()).collect())
        rows.append(
            (f"older_than(21) over {n_dates:,} encrypted dates", f"{t_cmp:.3f} s",
             f"{t_cmp / t_plain_cmp:,.0f}× plaintext `dob <= cutoff` ({t_plain_cmp * 1e3:.2f} ms); "
             f"{t_cmp / n_dates * 1e9:.0f} ns/row vs ≈340 ms per tfhe-rs comparison", "target ≤ 100×")
        )  # fmt: skip
        errors = dp_error.measure(kh.url, admin, DP_EPSILONS, groups=args.dp_groups)
    dp_rows = [
        (
            f"DP sum error, ε = {e:g} ({len(v)} answers, values in [0, {dp_error.BOUND}])",
            f"mean {np.mean(v):,.1f}",
            f"median {np.median(v):,.1f}, max {np.max(v):,.1f}",
            "",
        )
        for e, v in errors.items()
    ]
    rows += dp_rows
    pngs = [
        plots.throughput(series, args.out / "throughput.png"),
        plots.ratios(series, args.out / "ratios.png"),
        plots.dp_error(errors, args.out / "dp_error.png", sensitivity=float(dp_error.BOUND)),
    ]
    lines = [
        "# ghostpii benchmark results",
        "",
        f"Machine: {machine()}",
        "",
        "| measure | time / size | rate or ratio | target |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        *[f"![{p.stem}]({p.name})" for p in pngs],
        "",
    ]
    (args.out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
