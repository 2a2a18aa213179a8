"""Tutorial, part 2 — the worker (an analyst of the owner), in its own process with its own token.

The worker holds the ciphertext (``insurance.parquet``) and the token its owner issued. It
computes the mean, the standard deviation and the median of ``charges`` with ordinary Polars
expressions — the keyhost issues the answer keys its grants allow — and is refused decryption,
which it was not granted. Part 1 is ``tutorial_owner.py``.

    python examples/tutorial_worker.py --url URL --token-file DIR/worker.token --data DIR/insurance.parquet
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import polars as pl

import ghostpii as gp


def main() -> None:
    """Compute the three statistics, try a decryption, print the results (JSON)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="the keyhost")
    p.add_argument("--token-file", required=True, help="the worker's token (from its owner)")
    p.add_argument("--data", required=True, help="the encrypted Parquet file")
    args = p.parse_args()

    worker = gp.connect(args.url, Path(args.token_file).read_text().strip())
    lf = pl.scan_parquet(args.data)
    mean = lf.select(pl.col("charges").ghost.mean()).ghost.collect(worker)["charges"][0]
    std = lf.select(pl.col("charges").ghost.std()).ghost.collect(worker)["charges"][0]
    median = lf.select(pl.col("charges").ghost.median()).ghost.collect(worker)["charges"][0]
    by_region = (
        lf.group_by("region").agg(pl.col("charges").ghost.mean().alias("mean")).sort("region").ghost.collect(worker)
    )
    try:
        lf.select(pl.col("charges").ghost.decrypt()).ghost.collect(worker)
        refused = None
    except gp.PermissionDenied as e:
        refused = {"class": type(e).__name__, "reason": e.reason, "message": str(e)}
    print(
        json.dumps(
            {
                "identity": worker.whoami()["identity"],
                "mean": mean,
                "std": std,
                "median": median,
                "mean_by_region": dict(zip(by_region["region"], by_region["mean"], strict=True)),
                "decrypt": refused,
            }
        )
    )


if __name__ == "__main__":
    main()
