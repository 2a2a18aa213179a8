"""ghostpii demo on an embedded keyhost: encrypt, query, model, audit.

Run with ``bash scripts/demo.sh`` (builds first) or ``python examples/demo.py [--out DIR]``.
Ends by writing an HTML report of what it did (``report.html``) and printing its path.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import polars as pl

import ghostpii as gp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import Report  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "insurance.csv"


QUERY = """
pl.scan_parquet(path)
  .filter(pl.col("age").ghost.ge(30))
  .group_by("smoker", "region")
  .agg(pl.len().alias("rows"),
       pl.col("charges").ghost.mean().alias("mean_charges"),
       pl.col("bmi").ghost.mean().alias("mean_bmi"),
       pl.col("age").ghost.mean().alias("mean_age"))
  .sort("smoker", "region")
  .ghost.collect(analyst)
"""


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, help="folder for the keyhost, the Parquet file and report.html")
    args = ap.parse_args(argv)
    df = pl.read_csv(DATA)
    work = args.out or Path(tempfile.mkdtemp(prefix="ghostpii-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    report = Report("ghostpii demo: what happened")
    with gp.Keyhost.local(work / "keyhost") as kh:
        print(f"keyhost running at {kh.url} (data in {kh.path})")
        admin = kh.admin()
        ds = admin.create_dataset("insurance")

        # 1. The owner encrypts: age, bmi, children and charges become ciphertext.
        enc = gp.encrypt(
            df,
            ds,
            {
                "age": gp.integer(bounds=(0, 130), compare=True),
                "bmi": gp.number(decimals=3, bounds=(0, 100)),
                "children": gp.integer(bounds=(0, 20)),
                "charges": gp.number(decimals=4, bounds=(0, 100_000)),
            },
        )
        path = work / "insurance.parquet"
        enc.write_parquet(path)
        print("\nencrypted frame (ciphertext at rest in Parquet):")
        print(pl.read_parquet(path).head(3))

        # 2. The owner grants an analyst aggregates, but no per-row decryption.
        token = admin.grant(
            "analyst",
            ds,
            [gp.allow.aggregate(c, min_rows=20) for c in ("age", "bmi", "charges")]
            + [gp.allow.compare("age", range=(18, 65), max_constants=5)],
        )
        assert token is not None
        an = gp.connect(kh.url, token)

        # 3. The analyst queries with ordinary Polars; sealed values print as such ...
        q = (
            pl.scan_parquet(path)
            .filter(pl.col("age").ghost.ge(30))  # a comparison on ciphertext, with a keyhost token
            .group_by("smoker", "region")
            .agg(
                pl.len().alias("rows"),
                pl.col("charges").ghost.mean().alias("mean_charges"),
                pl.col("bmi").ghost.mean().alias("mean_bmi"),
                pl.col("age").ghost.mean().alias("mean_age"),
            )
            .sort("smoker", "region")
        )
        an.reset_stats()
        print("\nplain collect(): results stay sealed (the comparison token is fetched once and cached)")
        print(q.collect().head(2))
        # ... and are revealed all at once, in one keyhost request.
        res = q.ghost.collect(an)
        n = an.stats()["answer_key_requests"]
        print(f"\nrevealed; {n} answer-key requests in all (the token, then every group and column at once):")
        print(res)
        check = (
            df.filter(pl.col("age") >= 30)
            .group_by("smoker", "region")
            .agg(pl.col("charges").mean())
            .sort("smoker", "region")
        )
        err = (res["mean_charges"] - check["charges"]).abs().max()
        print(f"max difference to plaintext Polars: {err:.2e}")
        report.text(
            "Setup",
            f"An embedded keyhost at {kh.url}; dataset 'insurance' ({df.height} rows) encrypted: age (with the "
            "order facet), bmi, children, charges. The analyst may aggregate age, bmi and charges (min_rows=20) "
            "and compare age against constants in [18, 65].",
        )
        report.query(
            "Query 1: group means over encrypted rows aged 30 or more",
            QUERY,
            res,
            note=f"{n} answer-key requests; largest difference to plaintext Polars {err:.2e}",
        )
        labels = [f"{s} / {r}" for s, r in zip(res["smoker"], res["region"], strict=True)]
        report.chart("Mean charges per group (revealed)", labels, res["mean_charges"].to_list(), "mean charges")

        # 4. A simple model over revealed aggregates: charges by smoker status, with a
        #    least-squares line of group mean charges against group mean bmi.
        x, y = res["mean_bmi"], res["mean_charges"]
        slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
        print(f"\nmodel over group means: charges ≈ {y.mean() - slope * x.mean():,.0f} + {slope:,.0f}·bmi")
        by_smoker = pl.scan_parquet(path).group_by("smoker").agg(pl.col("charges").ghost.mean()).sort("smoker")
        smoker_means = by_smoker.ghost.collect(an)
        print(smoker_means)
        report.query(
            "Query 2: mean charges by smoker status",
            'pl.scan_parquet(path).group_by("smoker").agg(pl.col("charges").ghost.mean()).sort("smoker")',
            smoker_means,
            note=f"least-squares line over the group means: charges ≈ {y.mean() - slope * x.mean():,.0f} "
            f"+ {slope:,.0f}·bmi",
        )
        refusals: list[str] = []

        # 5. What the analyst may not do: decrypt rows. The refusal names the missing grant.
        for what, bad in (
            ("decrypt rows", pl.scan_parquet(path).select(pl.col("charges").ghost.decrypt())),
            ("compare outside the granted range", pl.scan_parquet(path).filter(pl.col("age").ghost.lt(80))),
        ):
            try:
                bad.ghost.collect(an)
            except gp.PermissionDenied as e:
                print(f"\nrefused as expected ({what}, {e.reason}): {e}")
                refusals.append(f"{what}: {e}")
        report.text("Refused, as the grants say", " · ".join(refusals))

        # 6. The owner reads the tamper-evident audit log.
        log = admin.audit(ds)
        print("\naudit log of the dataset:")
        with pl.Config(tbl_rows=20, fmt_str_lengths=30):
            print(log.select("index", "identity", "column", "operation", "rid_count", "decision", "reason"))
        ok = admin.verify_audit()["ok"]
        print(f"audit chain verifies: {ok}")
        report.audit(
            f"The audit entries this demo caused (chain verifies: {ok})",
            log.select("index", "time", "identity", "column", "operation", "rid_count", "decision", "reason"),
        )
    path = report.write(work / "report.html")
    print(f"\nreport of this demo: {path}")
    return path


if __name__ == "__main__":
    main()
