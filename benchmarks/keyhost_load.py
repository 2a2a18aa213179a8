"""Keyhost under concurrent load: requests/s and latency percentiles (writes keyhost_load.md).

    python benchmarks/keyhost_load.py [--clients 16] [--requests 1000]

Starts ``ghostpii keyhost serve`` on 127.0.0.1:0 with a fresh SQLite file, encrypts a small
dataset, then runs N client threads (each its own session) sending M answer-key requests
(one sum descriptor over 1,000 rids) each. Loopback only; the loops are bounded.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import polars as pl

import ghostpii as gp
from ghostpii.reveal import sum_descriptors

OUT = Path(__file__).parent / "keyhost_load.md"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=1000)
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="ghostpii-load-"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ghostpii.cli", "keyhost", "serve", "--data", str(data), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
        admin = gp.connect(url, (data / "admin.token").read_text().strip())
        ds = admin.create_dataset("load")
        enc = gp.encrypt(pl.DataFrame({"x": list(range(1000))}), ds, {"x": gp.integer(bounds=(0, 1000))})
        desc = sum_descriptors(enc.select(pl.col("x").ghost.sum())["x"])[0]
        token = admin.grant("loader", ds, [gp.allow.aggregate("x")])
        assert token is not None
        latencies: list[float] = []
        lock = threading.Lock()
        errors: list[BaseException] = []

        def client() -> None:
            s = gp.connect(url, token)
            mine = []
            try:
                for _ in range(args.requests):
                    t = time.perf_counter()
                    s.answer_keys([desc])
                    mine.append(time.perf_counter() - t)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        if errors:
            raise errors[0]
        audit = admin.audit(ds, limit=100_000)
        issued = audit.filter((pl.col("operation") == "sum") & (pl.col("decision") == "issued")).height
        lat = sorted(latencies)
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3  # noqa: E731
        lines = [
            "# keyhost load",
            "",
            f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
            "clients are Python threads in one process (they share the GIL), the keyhost is its own process.",
            "",
            "| clients × requests | wall | requests/s | p50 | p99 | max | audit rows issued | chain verifies |",
            "|---|---|---|---|---|---|---|---|",
            f"| {args.clients} × {args.requests} | {wall:.2f} s | {len(lat) / wall:,.0f} | {p(0.5):.2f} ms "
            f"| {p(0.99):.2f} ms | {lat[-1] * 1e3:.1f} ms | {issued:,} | {admin.verify_audit()['ok']} |",
            "",
            f"Mean latency {statistics.mean(lat) * 1e3:.2f} ms over {len(lat):,} requests "
            "(each: one sum descriptor over 1,000 rids, audited in its own SQLite transaction).",
            "",
        ]
        OUT.write_text("\n".join(lines))
        print("\n".join(lines))
        assert issued == args.clients * args.requests, "every answer key is audited exactly once"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
