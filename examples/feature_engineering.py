# %% [markdown]
# # Feature engineering and model fits over ciphertext
#
# Notebook-style script (cells marked `# %%`): encrypted insurance and titanic data →
# features derived over ciphertext → fits → evaluation on a held-out split → what was revealed.
# Run: `python examples/feature_engineering.py [--out DIR]`.

# %%
from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import polars as pl

import ghostpii as gp

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def split(df: pl.DataFrame, every: int = 5) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Deterministic held-out split: every `every`-th row is held out."""
    df = df.with_row_index("row")
    return df.filter(pl.col("row") % every != 0).drop("row"), df.filter(pl.col("row") % every == 0).drop("row")


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, help="folder for the keyhost and the Parquet files")
    args = ap.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="ghostpii-fe-"))
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, float] = {}

    # %% The owner encrypts; products=[...] adds the deg2 facet (squares and pairwise products).
    kh = gp.Keyhost.local(out / "keyhost")
    owner = kh.admin()
    ins = pl.read_csv(DATA / "insurance.csv").with_columns(
        (pl.col("smoker") == "yes").cast(pl.Int8).alias("smoker_flag")
    )
    ins_train, ins_test = split(ins)
    ds = owner.create_dataset("insurance")
    enc = gp.encrypt(
        ins_train,
        ds,
        {
            "age": gp.integer(bounds=(0, 120), compare=True),
            "bmi": gp.number(decimals=3, bounds=(10, 60), compare=True),
            "children": gp.integer(bounds=(0, 10)),
            "charges": gp.number(decimals=2, bounds=(0, 100_000)),
        },
        products=[("age", "bmi", "children", "charges")],
    )
    enc.write_parquet(out / "insurance.parquet")
    token = owner.grant(
        "analyst",
        ds,
        [
            # exact moments: every group of rows the answers tell apart keeps >= 20 rows; the fit's
            # plaintext features (smoker, obese, age band) cut the rows into 12 groups of 23+ rows
            gp.allow.moments(["age", "bmi", "children", "charges"], min_rows=20),
            gp.allow.compare("age", constants=[30, 50]),
            gp.allow.compare("bmi", constants=[30]),
        ],
    )

    # %% The analyst: statistics first (one descriptor for the whole batch).
    an = gp.connect(kh.url, token)
    lf = pl.scan_parquet(out / "insurance.parquet")
    stats = lf.select(
        pl.col("charges").ghost.std().alias("sd_charges"),
        gp.corr("age", "charges").alias("corr_age_charges"),
        gp.corr("bmi", "charges").alias("corr_bmi_charges"),
    ).ghost.collect(an)
    print(stats)

    # %% Features derived over ciphertext: comparisons and one-hot buckets (the analyst learns
    # these per row, so they enter the fit as public per-row weights).
    feats: list[str | pl.Expr] = [
        "age",
        "bmi",
        "children",
        "smoker_flag",
        pl.col("bmi").ghost.ge(30).cast(pl.Int8).alias("obese"),
        *gp.ml.one_hot(pl.col("age").ghost.bucketize([30, 50]), 3, name="age_band"),
    ]
    an.reset_stats()
    m = gp.ml.LinearRegression().fit(lf, features=feats, target="charges", session=an)
    print("round trips for the fit:", an.stats()["round_trips"])
    print(m.weights)

    # %% Evaluation on the held-out plaintext split (the same features, computed in the clear).
    test = ins_test.with_columns(
        (pl.col("bmi") >= 30).cast(pl.Int8).alias("obese"),
        ((pl.col("age") >= 30) & (pl.col("age") < 50)).cast(pl.Int8).alias("age_band_1"),
        (pl.col("age") >= 50).cast(pl.Int8).alias("age_band_2"),
    )
    err = m.predict(test) - test["charges"]
    rmse = math.sqrt(float((err**2).mean()))  # type: ignore[operator]
    r2 = 1 - float((err**2).sum()) / float(((test["charges"] - test["charges"].mean()) ** 2).sum())  # type: ignore[operator]
    print(f"held-out RMSE {rmse:,.0f}, R² {r2:.3f}")
    results["insurance_r2"] = r2

    # %% Titanic: approximate logistic regression (PASS-GLM) on an encrypted label and features.
    tit = pl.read_csv(DATA / "titanic.csv").with_columns(
        (pl.col("Sex") == "female").cast(pl.Int8).alias("female"), pl.col("Pclass").cast(pl.Int8)
    )
    t_train, t_test = split(tit, 4)
    ds2 = owner.create_dataset("titanic")
    enc2 = gp.encrypt(
        t_train,
        ds2,
        {
            "Age": gp.number(decimals=1, bounds=(0, 100), compare=True),
            "Fare": gp.number(decimals=2, bounds=(0, 600)),
            "Survived": gp.integer(bounds=(0, 1)),
        },
        products=[("Age", "Fare", "Survived")],
    )
    token2 = owner.grant(
        "analyst",
        ds2,
        [gp.allow.moments(["Age", "Fare", "Survived"], min_rows=20), gp.allow.compare("Age", constants=[16])],
    )
    an2 = gp.connect(kh.url, token2)
    c = gp.ml.LogisticRegression(alpha=1.0).fit(
        enc2,
        # plaintext features cut the rows into groups (female × Pclass: 6 groups of 23+ rows) that
        # the exact answers tell apart; a "child" flag (Age < 16) would leave groups of 3 rows,
        # below min_rows=20, and the fit would be refused (docs/privacy.md, the disclosure rule)
        features=["Age", "Fare", "female", "Pclass"],
        target="Survived",
        session=an2,
    )
    print(f"titanic: fitted on {c.n_rows_} rows, {c.n_rows_dropped_} dropped for missing Age/Fare")
    tt = t_test.drop_nulls(["Age", "Fare"])
    acc = float((c.predict(tt) == tt["Survived"]).mean())  # type: ignore[arg-type]
    print(f"held-out accuracy {acc:.3f}")
    results["titanic_accuracy"] = acc

    # %% What was revealed: the owner reads the audit log (one Gram matrix per fit).
    log = owner.audit(ds, identity="analyst")
    print(log.select([c for c in ("operation", "decision", "rid_count", "column") if c in log.columns]))
    results["audit_entries"] = float(log.height)
    kh.close()
    return results


if __name__ == "__main__":
    main()
