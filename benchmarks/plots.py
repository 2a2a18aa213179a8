"""PNG plots of the benchmark results (matplotlib, no display needed).

``throughput`` and ``ratios`` take ``{rows: {measure: value}}`` as ``run.py`` collects it;
``dp_error`` takes ``{epsilon: [|noisy - exact|, ...]}`` from ``dp_error.measure``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

Series = dict[int, dict[str, float]]

THROUGHPUT = {"encrypt_mcells": "encrypt num (M cells/s)", "key_mrids": "keyhost sum key (M rids/s)"}
RATIOS = {
    "sum_ratio": "revealed sum / plaintext sum",
    "mean_ratio": "revealed mean / plaintext sum",
    "scan_ratio": "Parquet scan+sum / plaintext scan+sum",
}


def _finish(fig: Any, ax: Any, xlabel: str, ylabel: str, title: str, path: Path) -> Path:
    """Label, grid and legend the axes, write the PNG and free the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _lines(series: Series, measures: dict[str, str], ylabel: str, title: str, path: Path, logy: bool) -> Path:
    sizes = sorted(series)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for key, label in measures.items():
        pts = [(n, series[n][key]) for n in sizes if key in series[n]]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    return _finish(fig, ax, "rows", ylabel, title, path)


def throughput(series: Series, path: Path) -> Path:
    return _lines(series, THROUGHPUT, "millions per second", "ghostpii throughput per size", path, logy=False)


def ratios(series: Series, path: Path) -> Path:
    return _lines(series, RATIOS, "× plaintext Polars (log)", "ghostpii cost against plaintext Polars", path, logy=True)


def dp_error(errors: dict[float, list[float]], path: Path, sensitivity: float | None = None) -> Path:
    """Mean and median |noisy − exact| of DP sums per ε (log–log), every answer as a dot."""
    eps = sorted(errors)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for e in eps:
        ax.scatter([e] * len(errors[e]), [max(x, 0.5) for x in errors[e]], s=8, alpha=0.35, color="tab:gray")
    ax.plot(eps, [sum(errors[e]) / len(errors[e]) for e in eps], marker="o", label="mean |noisy − exact|")
    ax.plot(eps, [sorted(errors[e])[len(errors[e]) // 2] for e in eps], marker="s", label="median")
    if sensitivity is not None:
        ax.plot(eps, [sensitivity / e for e in eps], linestyle="--", label="Δ/ε (Laplace scale)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    return _finish(fig, ax, "ε per answer", "absolute error (zero errors drawn at 0.5)",
                   "DP sum error against ε (real keyhost)", path)  # fmt: skip
