"""Tutorial, part 1 — the data owner (one organisation), in its own process with its own token.

The owner encrypts the ``charges`` column of ``tests/data/insurance.csv``, writes the ciphertext to
Parquet, creates an analyst in its own namespace (``<owner>/worker``) and grants it the mean, the
standard deviation and the median of ``charges`` — and nothing else. It writes the worker's token
to a file (0600) for the worker's process. No admin is involved: the keyhost's admin only created
the owner identity. Part 2 is ``tutorial_worker.py``.

    python examples/tutorial_owner.py --url URL --token-file clinic.token --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import polars as pl

import ghostpii as gp

CSV = Path(__file__).resolve().parent.parent / "tests" / "data" / "insurance.csv"


def main() -> None:
    """Encrypt, write the Parquet file and the worker's token, print what was granted (JSON)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="the keyhost")
    p.add_argument("--token-file", required=True, help="the owner's token")
    p.add_argument("--out", required=True, help="where insurance.parquet and worker.token are written")
    p.add_argument("--csv", default=str(CSV))
    p.add_argument("--dataset", default="insurance")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    owner = gp.connect(args.url, Path(args.token_file).read_text().strip())
    ds = owner.create_dataset(args.dataset)
    df = pl.read_csv(args.csv).select("region", "charges")
    enc = gp.encrypt(
        df,
        ds,
        {"charges": gp.number(decimals=2, bounds=(0, 100_000), compare=True)},  # compare: the median
        products=[("charges",)],  # the square of charges: the standard deviation
    )
    enc.write_parquet(out / "insurance.parquet")

    grants = [
        gp.allow.aggregate("charges", min_rows=10),  # mean (sum and count)
        gp.allow.moments(["charges"], min_rows=10),  # standard deviation (Σx, Σx², n)
        gp.allow.compare("charges"),  # median (comparison tokens of a search)
    ]
    token = owner.grant("worker", ds, grants)  # creates <owner>/worker, issues its token
    fd = os.open(out / "worker.token", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    worker = next(i["name"] for i in owner.identities() if str(i["name"]).endswith("/worker"))
    granted = [{"identity": g["identity"], "column": g["column"], "operation": g["operation"]}
               for g in owner.grants(ds, worker)]  # fmt: skip
    print(json.dumps({"owner": owner.whoami()["identity"], "worker": worker, "dataset": ds.name, "grants": granted}))


if __name__ == "__main__":
    main()
