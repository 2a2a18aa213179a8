//! HTML building: the one escaping function ([`esc`]), URL path segments ([`seg`]), and
//! small helpers for the markup every page shares. Every value that comes from the keyhost's
//! data (names, parameters, reasons, hashes) is passed through [`esc`] before it is written
//! into a page; the helpers here do that for their arguments.

use std::fmt::Write as _;

/// Escape text for HTML element content and double- or single-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a value for one URL path segment or query value (RFC 3986 unreserved
/// characters stay), so that a name with `/`, `?` or `#` cannot change the URL's shape.
/// The result is still passed through [`esc`] where it lands in an attribute.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `<a href="HREF">TEXT</a>`, both escaped.
pub fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", esc(href), esc(text))
}

/// A table with escaped header cells; `rows` are already-built `<tr>` rows.
pub fn table(headers: &[&str], rows: &[String], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\">{}</p>", esc(empty));
    }
    let mut out = String::from("<table><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str(r);
    }
    out.push_str("</tbody></table>");
    out
}

/// A `<tr>` of already-built cells (each cell's content must be escaped by the caller).
pub fn row(class: Option<&str>, cells: &[String]) -> String {
    let mut out = match class {
        Some(c) => format!("<tr class=\"{}\">", esc(c)),
        None => String::from("<tr>"),
    };
    for c in cells {
        let _ = write!(out, "<td>{c}</td>");
    }
    out.push_str("</tr>");
    out
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(csrf: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(csrf))
}

/// A one-button POST form (revoke, reset, ...).
pub fn button_form(action: &str, csrf: &str, label: &str, class: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\">{}<button type=\"submit\" class=\"{}\">{}</button></form>",
        esc(action),
        csrf_field(csrf),
        esc(class),
        esc(label)
    )
}

/// `<option>`s of a select, the one equal to `selected` marked.
pub fn options(values: &[(&str, &str)], selected: &str) -> String {
    let mut out = String::new();
    for (value, label) in values {
        let sel = if *value == selected { " selected" } else { "" };
        let _ = write!(out, "<option value=\"{}\"{sel}>{}</option>", esc(value), esc(label));
    }
    out
}

/// Format a number of ε or ρ for display (no trailing noise digits).
pub fn num(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_html_metacharacter() {
        let hostile = "<script>alert(\"x\")</script>&'/";
        let e = esc(hostile);
        assert_eq!(e, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;/");
        assert!(!e.contains('<') && !e.contains('>') && !e.contains('"') && !e.contains('\''));
    }

    #[test]
    fn path_segments_cannot_change_the_url() {
        assert_eq!(seg("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
        assert_eq!(seg("ok-name_1.x~"), "ok-name_1.x~");
        assert_eq!(seg("é"), "%C3%A9");
    }

    #[test]
    fn helpers_escape_their_arguments() {
        let l = link("/console/datasets/%3C", "<b>");
        assert_eq!(l, "<a href=\"/console/datasets/%3C\">&lt;b&gt;</a>");
        assert!(options(&[("<", "<")], "<").contains("value=\"&lt;\" selected>&lt;<"));
        assert!(table(&["<h>"], &[], "none <here>").contains("none &lt;here&gt;"));
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(1.0 / 3.0), "0.3333");
    }
}
