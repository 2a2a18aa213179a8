"""DP linear regression (AdaSSP from one noisy Gram matrix) on insurance: coefficient error
and test MSE against ε, through a real keyhost; writes ``docs/dp_regression.png``.

    python benchmarks/moments_dp.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

import ghostpii as gp  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FEATURES = ["age", "bmi", "children"]


def main() -> Path:
    df = pl.read_csv(ROOT / "tests" / "data" / "insurance.csv").with_row_index("i")
    train, test = df.filter(pl.col("i") % 5 != 0), df.filter(pl.col("i") % 5 == 0)
    schema = {
        "age": gp.integer(bounds=(18, 64)),
        "bmi": gp.number(decimals=2, bounds=(15, 55)),
        "children": gp.integer(bounds=(0, 5)),
        "charges": gp.number(decimals=0, bounds=(0, 65_000)),
    }
    kh = gp.Keyhost.local()
    admin = kh.admin()
    ds = admin.create_dataset("dp_regression")
    enc = gp.encrypt(train, ds, schema, products=[tuple(schema)], show_progress=False)
    exact_tok = admin.grant("exact", ds, [gp.allow.moments(list(schema))])
    exact = gp.ml.LinearRegression().fit(
        enc, features=FEATURES, target="charges", session=gp.connect(kh.url, exact_tok)
    )
    w0 = np.array([*exact.coef_, exact.intercept_])

    def mse(m: gp.ml.LinearRegression) -> float:
        return float(((m.predict(test) - test["charges"]) ** 2).mean())  # type: ignore[arg-type]

    eps = [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
    reps = 8
    coef_err, test_mse = [], []
    for e in eps:
        errs, mses = [], []
        tok = admin.grant(f"dp{e}", ds, [gp.allow.moments(list(schema), epsilon=e, delta=1e-6, budget=e * reps + 1)])
        an = gp.connect(kh.url, tok)
        for r in range(reps):  # distinct row sets → independent noise
            m = gp.ml.LinearRegression().fit(enc.slice(r), features=FEATURES, target="charges", session=an)
            w = np.array([*m.coef_, m.intercept_])
            errs.append(float(np.linalg.norm(w - w0) / np.linalg.norm(w0)))
            mses.append(mse(m))
        coef_err.append(float(np.median(errs)))
        test_mse.append(float(np.median(mses)))
    kh.close()
    base = float(((test["charges"] - train["charges"].mean()) ** 2).mean())  # type: ignore[operator]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.loglog(eps, coef_err, "o-")
    a1.set_xlabel("ε (δ = 1e-6)")
    a1.set_ylabel("relative coefficient error ‖w − w_exact‖ / ‖w_exact‖")
    a1.set_title("AdaSSP coefficients vs exact least squares")
    a2.semilogx(eps, test_mse, "o-", label="AdaSSP (DP)")
    a2.axhline(mse(exact), color="g", ls="--", label="exact fit")
    a2.axhline(base, color="r", ls=":", label="predict the mean")
    a2.set_xlabel("ε (δ = 1e-6)")
    a2.set_ylabel("test MSE")
    a2.set_title("held-out MSE (insurance, 1 in 5 rows)")
    a2.legend()
    fig.tight_layout()
    out = ROOT / "docs" / "dp_regression.png"
    fig.savefig(out, dpi=110)
    for e, c, t in zip(eps, coef_err, test_mse, strict=True):
        print(f"eps={e:<5} coef_err={c:.3f} test_mse={t:,.0f}")
    print(f"exact test MSE {mse(exact):,.0f}; mean-only {base:,.0f}; wrote {out}")
    return out


if __name__ == "__main__":
    main()
