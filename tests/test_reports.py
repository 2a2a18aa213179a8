"""The pictures: the demo's HTML report and the benchmark plots, made from real runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import ghostpii as gp

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def test_demo_writes_a_report_with_every_audit_entry_it_caused(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    m = re.search(r"report of this demo: (\S+)$", out.strip())
    assert m is not None, out[-2000:]
    path = Path(m.group(1))
    assert path == tmp_path / "report.html"
    doc = path.read_text(encoding="utf-8")
    assert "Query 1" in doc and "mean_charges" in doc and "<svg" in doc and "<script" not in doc
    # Every entry of the dataset's audit log is in the report, refusals highlighted.
    with gp.Keyhost.local(tmp_path / "keyhost") as kh:
        log = kh.admin().audit("insurance")
    assert log.height > 5
    cells = re.findall(r"<tr(?: class=\"refused\")?><td>(\d+)</td>", doc)
    assert sorted(int(c) for c in cells) == sorted(log["index"].to_list())
    refused = log.filter(log["decision"] == "refused").height
    assert refused >= 2 and doc.count('<tr class="refused">') == refused


def test_benchmark_writes_tables_and_plots(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--sizes", "2000,4000", "--out", str(tmp_path)]
        + ["--dp-groups", "20"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    md = (tmp_path / "results.md").read_text()
    for name in ("throughput", "ratios", "dp_error"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == PNG
        assert f"![{name}]({name}.png)" in md
    assert "encrypt num, 4,000 rows" in md
    # DP error falls as ε grows (Laplace scale 100/ε: 1000 at ε = 0.1, 10 at ε = 10).
    means = {float(e): float(v.replace(",", "")) for e, v in re.findall(r"ε = ([\d.]+) .*?\| mean ([\d,.]+)", md)}
    assert set(means) == {0.1, 0.3, 1.0, 3.0, 10.0}
    assert means[0.1] > means[1.0] > means[10.0]
