"""Keyhost under concurrent load: answer-key requests/s and latency percentiles (writes
keyhost_load.md and keyhost_load.png).

    python benchmarks/keyhost_load.py [--clients 4] [--requests 200] [--datasets 1,4]
                                      [--postgres-replicas 1,2,3] [--no-sqlite]

For each configuration — one keyhost on SQLite, and 1, 2, 3 replicas on one PostgreSQL database
(a throwaway cluster: ``initdb`` in a temp dir, 127.0.0.1, default durability settings: fsync and
synchronous commit on) — and each number of datasets D, it starts ``ghostpii keyhost serve``
processes on 127.0.0.1:0, encrypts D small datasets and grants one identity a sum on each, then runs
N client *processes* (separate interpreters, no shared GIL; client i talks to replica i mod R about
dataset i mod D), each sending M answer-key requests (one sum descriptor over 1,000 rids) in a loop.
Every answer is recorded in its own transaction (its audit entry queued in it, integrated by the
sequencer in batches); the script checks the audit holds exactly one issued row per answer, that
every entry was integrated and that the chain verifies. Loopback only; the loops are bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

import ghostpii as gp
from ghostpii.reveal import sum_descriptors

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pg_cluster import postgres_cluster  # noqa: E402 - the tests' throwaway cluster

OUT = Path(__file__).parent / "keyhost_load.md"


def _client(url: str, token: str, desc_file: str, requests: int, start_at: float) -> None:
    """One client process: wait for the common start, send the requests, print latencies (JSON)."""
    desc = json.loads(Path(desc_file).read_text())
    receipt: dict[str, object] = {}
    s = gp.connect(url, token)
    s.answer_keys([desc])  # connection warm-up, not timed
    while time.time() < start_at:
        time.sleep(0.001)
    lat = []
    for _ in range(requests):
        t = time.perf_counter()
        (r,) = s.answer_keys([desc])
        lat.append(time.perf_counter() - t)
        receipt = r["receipt"]
    end = time.time()
    last = s.check_receipt(receipt)  # after the timed loop: the last answer's promise is kept
    print(json.dumps({"latencies": lat, "end": end, "last_receipt": last["status"]}))


def _serve(data: Path, database: str | None) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "ghostpii.cli", "keyhost", "serve", "--data", str(data), "--listen", "127.0.0.1:0"]
    if database:
        cmd += ["--database", database]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if "listening on" not in line:
        proc.kill()
        sys.exit(f"keyhost did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[-1]


def run(
    label: str, database: str | None, replicas: int, clients: int, requests: int, datasets: int
) -> dict[str, object]:
    data = Path(tempfile.mkdtemp(prefix="ghostpii-load-"))
    procs: list[subprocess.Popen[str]] = []
    urls: list[str] = []
    try:
        for _ in range(replicas):
            p, url = _serve(data, database)
            procs.append(p)
            urls.append(url)
        admin = gp.connect(urls[0], (data / "admin.token").read_text().strip())
        desc_files = []
        names = []
        token = None
        for d in range(datasets):
            ds = admin.create_dataset(f"load{d}")
            names.append(ds)
            enc = gp.encrypt(pl.DataFrame({"x": list(range(1000))}), ds, {"x": gp.integer(bounds=(0, 1000))})
            desc = sum_descriptors(enc.select(pl.col("x").ghost.sum())["x"])[0]
            desc_file = data / f"desc{d}.json"
            desc_file.write_text(json.dumps(desc))
            desc_files.append(desc_file)
            t = admin.grant("loader", ds, [gp.allow.aggregate("x")])
            token = token or t
        assert token is not None
        start_at = time.time() + 1.5 + 0.3 * clients
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--client",
                    urls[i % replicas],
                    token,
                    str(desc_files[i % datasets]),
                    str(requests),
                    repr(start_at),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(clients)
        ]
        outs = []
        for w in workers:
            out, _ = w.communicate(timeout=600)
            if w.returncode != 0:
                sys.exit(f"client failed ({w.returncode})")
            outs.append(json.loads(out.strip().splitlines()[-1]))
        wall = max(o["end"] for o in outs) - start_at
        lat = sorted(x for o in outs for x in o["latencies"])
        kept = all(o["last_receipt"] == "included" for o in outs)
        issued = 0
        for ds in names:
            audit = admin.audit(ds, limit=1_000_000)
            issued += audit.filter((pl.col("operation") == "sum") & (pl.col("decision") == "issued")).height
        expected = clients * (requests + 1)  # + one warm-up request per client
        assert issued == expected, f"{issued} issued audit rows for {expected} answers"
        v = admin.verify_audit()
        verified = bool(v["ok"])
        assert verified, v
        q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1e3  # noqa: E731
        return {
            "label": label,
            "replicas": replicas,
            "datasets": datasets,
            "clients": clients,
            "requests": requests,
            "wall": wall,
            "rps": len(lat) / wall,
            "p50": q(0.5),
            "p99": q(0.99),
            "max": lat[-1] * 1e3,
            "issued": issued,
            "verified": verified,
            "kept": kept,
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
        shutil.rmtree(data, ignore_errors=True)


def plot(rows: list[dict[str, object]], path: Path) -> Path:
    """Requests/s per configuration, one line per backend and number of datasets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    series: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        key = f"{r['label']}, {r['datasets']} dataset(s)"
        series.setdefault(key, []).append((int(str(r["replicas"])), float(str(r["rps"]))))
    for key, pts in series.items():
        pts.sort()
        marker = "s" if key.startswith("SQLite") else "o"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=key)
    ax.set_xlabel("keyhost processes (replicas)")
    ax.set_ylabel("requests/s")
    ax.set_xticks(sorted({int(str(r["replicas"])) for r in rows}))
    ax.set_title("keyhost answer-key throughput (1,000-rid sums)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        _client(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=4, help="client processes")
    ap.add_argument("--requests", type=int, default=200, help="requests per client")
    ap.add_argument("--postgres-replicas", default="1,2,3", help="replica counts on PostgreSQL ('' for none)")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--datasets", default="1,4", help="numbers of datasets the clients spread over")
    args = ap.parse_args()
    spreads = [int(x) for x in args.datasets.split(",") if x.strip()]
    rows = []
    if not args.no_sqlite:
        for d in spreads:
            rows.append(run("SQLite", None, 1, args.clients, args.requests, d))
    counts = [int(x) for x in args.postgres_replicas.split(",") if x.strip()]
    if counts:
        with postgres_cluster(durable=True) as cluster:
            for d in spreads:
                for n in counts:
                    rows.append(run("PostgreSQL", cluster.new_database(), n, args.clients, args.requests, d))
    lines = [
        "# keyhost load",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other "
        f"sessions (figures are indicative), Python {platform.python_version()}. Clients are separate "
        "processes (client i on replica i mod R, about dataset i mod D) on the same cores as the keyhosts "
        "and the database; the PostgreSQL cluster is local with default durability (fsync and synchronous "
        "commit on), SQLite runs WAL with synchronous=NORMAL (no fsync per commit).",
        "",
        "| backend | replicas | datasets | clients × requests | wall | requests/s | p50 | p99 | max "
        "| audit rows issued | chain verifies | last receipts kept |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['replicas']} | {r['datasets']} | {r['clients']} × {r['requests']} "
            f"| {r['wall']:.2f} s | {r['rps']:,.0f} | {r['p50']:.2f} ms | {r['p99']:.2f} ms | {r['max']:.1f} ms "
            f"| {r['issued']:,} | {r['verified']} | {r['kept']} |"
        )
    png = plot(rows, OUT.with_suffix(".png"))
    lines += [
        "",
        "Each request: one sum descriptor over 1,000 rids, recorded in its own transaction: on PostgreSQL "
        "under the lock of its identity × dataset (and the keyhost-wide write lock taken shared), its audit "
        "entry queued and integrated into the chain by the sequencer in batches (docs/keyhost.md). "
        "'audit rows issued' includes one untimed warm-up request per client; 'last receipts kept': each "
        "client's last receipt checked with POST /v1/audit/receipt after its loop says `included`.",
        "",
        f"![requests/s]({png.name})",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
