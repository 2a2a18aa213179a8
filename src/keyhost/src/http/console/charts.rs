//! Small charts as inline SVG, rendered on the keyhost (no script): answer-key activity over
//! time (issued vs refused) and budget use per identity. Text in them goes through [`esc`];
//! colours are presentation attributes (the console's CSP allows no inline styles).

use std::fmt::Write as _;

use super::html::{esc, num};
use crate::clock;

const ISSUED: &str = "#2e7d4f";
const REFUSED: &str = "#c0392b";
const SPENT: &str = "#3566a8";
const TRACK: &str = "#e3e8ef";

/// One identity's budget state on a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRow {
    pub identity: String,
    pub epsilon_spent: f64,
    pub epsilon_total: Option<f64>,
    /// δ of the total (every mechanism counts in one (ε, δ) total).
    pub delta: Option<f64>,
}

/// Answer keys in one span of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub start_micros: i64,
    pub width_micros: i64,
    pub issued: u64,
    pub refused: u64,
}

/// `2026-12-01 09:31:05` (UTC) of a time in microseconds.
fn short_time(micros: i64) -> String {
    let s = clock::format_rfc3339(micros);
    s.get(..19).unwrap_or(&s).replace('T', " ")
}

/// Stacked bars of issued (green) and refused (red) answer keys per span of time.
pub fn activity(buckets: &[Bucket]) -> String {
    if buckets.is_empty() {
        return "<p class=\"empty\" id=\"activity-empty\">No answer keys requested on this dataset yet.</p>".into();
    }
    let (w, h, left, bottom, top) = (720.0, 200.0, 44.0, 34.0, 12.0);
    let plot_h = h - bottom - top;
    let max = buckets.iter().map(|b| b.issued + b.refused).max().unwrap_or(0).max(1) as f64;
    let slot = (w - left - 8.0) / buckets.len() as f64;
    let bar = (slot * 0.8).max(1.0);
    let issued: u64 = buckets.iter().map(|b| b.issued).sum();
    let refused: u64 = buckets.iter().map(|b| b.refused).sum();
    let mut svg = format!(
        "<svg class=\"chart\" id=\"activity-chart\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" \
         aria-label=\"answer keys over time: {issued} issued, {refused} refused\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#888\"/>\
         <text x=\"{lx}\" y=\"{ty}\" font-size=\"11\" text-anchor=\"end\">{max}</text>\
         <text x=\"{lx}\" y=\"{y0}\" font-size=\"11\" text-anchor=\"end\">0</text>",
        y0 = top + plot_h,
        x1 = w - 8.0,
        lx = left - 6.0,
        ty = top + 10.0,
        max = max as u64
    );
    for (i, b) in buckets.iter().enumerate() {
        let x = left + i as f64 * slot + (slot - bar) / 2.0;
        let hi = b.issued as f64 / max * plot_h;
        let hr = b.refused as f64 / max * plot_h;
        let base = top + plot_h;
        let tip = esc(&format!(
            "{} – {}: {} issued, {} refused",
            short_time(b.start_micros),
            short_time(b.start_micros + b.width_micros),
            b.issued,
            b.refused
        ));
        let _ = write!(
            svg,
            "<g class=\"bucket\"><title>{tip}</title>\
             <rect class=\"issued\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{hi:.1}\" fill=\"{ISSUED}\"/>\
             <rect class=\"refused\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{hr:.1}\" fill=\"{REFUSED}\"/></g>",
            base - hi,
            base - hi - hr
        );
    }
    let first = buckets[0].start_micros;
    let last = buckets[buckets.len() - 1].start_micros + buckets[buckets.len() - 1].width_micros;
    let _ = write!(
        svg,
        "<text x=\"{left}\" y=\"{ty}\" font-size=\"11\">{}</text>\
         <text x=\"{xr}\" y=\"{ty}\" font-size=\"11\" text-anchor=\"end\">{} UTC</text>\
         <rect x=\"{lg}\" y=\"{ly}\" width=\"10\" height=\"10\" fill=\"{ISSUED}\"/><text x=\"{lg2}\" y=\"{lt}\" font-size=\"11\">issued ({issued})</text>\
         <rect x=\"{lr}\" y=\"{ly}\" width=\"10\" height=\"10\" fill=\"{REFUSED}\"/><text x=\"{lr2}\" y=\"{lt}\" font-size=\"11\">refused ({refused})</text></svg>",
        esc(&short_time(first)),
        esc(&short_time(last)),
        ty = h - 18.0,
        xr = w - 8.0,
        lg = left,
        lg2 = left + 14.0,
        lr = left + 130.0,
        lr2 = left + 144.0,
        ly = h - 12.0,
        lt = h - 3.0,
    );
    svg
}

/// One bar per identity: ε spent against its total (a full track when there is no total).
pub fn budgets(rows: &[BudgetRow]) -> String {
    if rows.is_empty() {
        return "<p class=\"empty\" id=\"budget-empty\">No identity holds an aggregate grant or a budget on this dataset.</p>"
            .into();
    }
    let (w, row_h, label_w) = (720.0, 26.0, 180.0);
    let h = row_h * rows.len() as f64 + 8.0;
    let track = w - label_w - 200.0;
    let max_spent = rows.iter().map(|r| r.epsilon_spent).fold(0.0_f64, f64::max);
    let mut svg = format!(
        "<svg class=\"chart\" id=\"budget-chart\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" \
         aria-label=\"privacy budget use per identity\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for (i, r) in rows.iter().enumerate() {
        let y = 4.0 + i as f64 * row_h;
        let (frac, text) = match r.epsilon_total {
            Some(t) if t > 0.0 => (
                (r.epsilon_spent / t).clamp(0.0, 1.0),
                format!("ε {} of {}", num(r.epsilon_spent), num(t)),
            ),
            Some(_) => (1.0, format!("ε {} of 0", num(r.epsilon_spent))),
            None if max_spent > 0.0 => (
                r.epsilon_spent / max_spent,
                format!("ε {} (no total)", num(r.epsilon_spent)),
            ),
            None => (0.0, format!("ε {} (no total)", num(r.epsilon_spent))),
        };
        let _ = write!(
            svg,
            "<g class=\"budget-row\"><title>{}: {}</title>\
             <text x=\"0\" y=\"{ty:.1}\" font-size=\"12\">{}</text>\
             <rect x=\"{label_w}\" y=\"{y:.1}\" width=\"{track:.1}\" height=\"16\" fill=\"{TRACK}\"/>\
             <rect class=\"spent\" x=\"{label_w}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"16\" fill=\"{SPENT}\"/>\
             <text x=\"{tx:.1}\" y=\"{ty:.1}\" font-size=\"12\">{}</text></g>",
            esc(&r.identity),
            esc(&text),
            esc(&truncate(&r.identity, 24)),
            frac * track,
            esc(&text),
            ty = y + 12.5,
            tx = label_w + track + 8.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(issued: u64, refused: u64) -> Bucket {
        Bucket {
            start_micros: 1_700_000_000_000_000,
            width_micros: 60_000_000,
            issued,
            refused,
        }
    }

    #[test]
    fn activity_bars_scale_to_the_busiest_span() {
        let svg = activity(&[bucket(4, 0), bucket(1, 1)]);
        assert!(svg.contains("5 issued, 1 refused"));
        // The busiest span (4) fills the 154-pixel plot; one key is a quarter of it.
        assert!(svg.contains("height=\"154.0\""), "{svg}");
        assert!(svg.contains("height=\"38.5\""), "{svg}");
        assert_eq!(svg.matches("<g class=\"bucket\">").count(), 2);
    }

    #[test]
    fn empty_activity_says_so() {
        assert!(activity(&[]).contains("No answer keys"));
    }

    #[test]
    fn budget_bars_escape_names_and_show_fractions() {
        let rows = [
            BudgetRow {
                identity: "<b>x</b>".into(),
                epsilon_spent: 0.5,
                epsilon_total: Some(2.0),
                delta: None,
            },
            BudgetRow {
                identity: "y".into(),
                epsilon_spent: 0.0,
                epsilon_total: None,
                delta: None,
            },
        ];
        let svg = budgets(&rows);
        assert!(!svg.contains("<b>"));
        assert!(svg.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(svg.contains("ε 0.5 of 2"));
        // A quarter of the 340-pixel track.
        assert!(svg.contains("width=\"85.0\""), "{svg}");
        assert!(svg.contains("ε 0 (no total)"));
    }
}
