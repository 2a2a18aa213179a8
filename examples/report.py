"""An HTML report of a ghostpii session: the queries, their revealed results, a chart and the
audit entries they caused. One self-contained file (inline SVG, no script, no downloads).
"""

from __future__ import annotations

import html
from pathlib import Path

import polars as pl

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1d2533; max-width: 1100px; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0; } th, td { border: 1px solid #d9dee7; padding: .25rem .6rem; }
th { background: #eef2f7; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.refused td { background: #fdecea; } pre { background: #f6f8fb; border: 1px solid #d9dee7; padding: .6rem; }
.note { color: #5b6678; }
"""


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def table(df: pl.DataFrame, highlight_refused: bool = False) -> str:
    """A DataFrame as an HTML table (every cell escaped; refusals highlighted when asked)."""
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    rows = []
    for r in df.iter_rows(named=True):
        cls = ' class="refused"' if highlight_refused and r.get("decision") == "refused" else ""
        cells = "".join(
            f'<td class="num">{v:,.2f}</td>' if isinstance(v, float) else f"<td>{_e('—' if v is None else v)}</td>"
            for v in r.values()
        )
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def bar_chart(labels: list[str], values: list[float], title: str) -> str:
    """Horizontal bars as inline SVG."""
    w, bar_h, label_w = 640, 22, 200
    top = max(values, default=0.0) or 1.0
    h = bar_h * len(values) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{_e(title)}">']
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        y = 4 + i * bar_h
        width = (w - label_w - 110) * v / top
        parts.append(
            f'<text x="0" y="{y + 14}" font-size="12">{_e(lab)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{width:.1f}" height="16" fill="#3566a8"/>'
            f'<text x="{label_w + width + 6:.1f}" y="{y + 13}" font-size="12">{v:,.0f}</text>'
        )
    parts.append(f'<text x="0" y="{h - 4}" font-size="11" fill="#5b6678">{_e(title)}</text></svg>')
    return "".join(parts)


class Report:
    """Sections in the order they are added; ``write`` produces the file."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.sections: list[str] = []

    def text(self, heading: str, body: str) -> None:
        self.sections.append(f"<h2>{_e(heading)}</h2><p>{_e(body)}</p>")

    def query(self, heading: str, code: str, result: pl.DataFrame, note: str = "") -> None:
        extra = f'<p class="note">{_e(note)}</p>' if note else ""
        self.sections.append(f"<h2>{_e(heading)}</h2><pre>{_e(code.strip())}</pre>{table(result)}{extra}")

    def chart(self, heading: str, labels: list[str], values: list[float], title: str) -> None:
        self.sections.append(f"<h2>{_e(heading)}</h2>{bar_chart(labels, values, title)}")

    def audit(self, heading: str, log: pl.DataFrame) -> None:
        refused = log.filter(pl.col("decision") == "refused").height
        self.sections.append(
            f"<h2>{_e(heading)}</h2><p>{log.height} entries, {refused} refused (highlighted).</p>"
            f"{table(log, highlight_refused=True)}"
        )

    def write(self, path: Path) -> Path:
        doc = (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(self.title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{_e(self.title)}</h1>{''.join(self.sections)}</body></html>"
        )
        path.write_text(doc, encoding="utf-8")
        return path
