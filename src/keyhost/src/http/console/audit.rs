//! The audit log, newest first, with filters (identity, column, operation, decision, time
//! span) and paging; refusals highlighted; each entry's receipt (index and Merkle leaf
//! hash, as answer keys carry it) and chain hashes. Admins read everything; an owner reads
//! the entries filed under it (`audit_readers`): its datasets, its join domains' membership
//! changes, the identities it manages.

use crate::store::Connection;
use crate::store::Value as Sql;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::api;
use super::html::{esc, options, row, seg, table};
use super::layout;
use super::lookup::managed;
use super::session::Console;
use crate::clock;
use crate::domain::audit::{self, Entry};
use crate::domain::identities::Identity;
use crate::domain::policy;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::ApiQuery;
use crate::state::AppState;

/// Entries per page.
pub const PAGE_SIZE: i64 = 50;

/// The filters of the page (all optional; empty fields are ignored).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct AuditFilter {
    #[serde(default)]
    pub dataset: String,
    #[serde(default)]
    pub identity: String,
    #[serde(default)]
    pub column: String,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub decision: String,
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub page: Option<u32>,
}

/// RFC 3339, or the `YYYY-MM-DDTHH:MM[:SS]` of a browser's datetime field, read as UTC.
pub fn parse_time(what: &str, s: &str) -> ApiResult<Option<i64>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let full = match s.len() {
        16 => format!("{s}:00Z"),
        19 => format!("{s}Z"),
        _ => s.to_owned(),
    };
    clock::parse_rfc3339(&full)
        .map(Some)
        .ok_or_else(|| ApiError::invalid(format!("{what} must be a time like 2026-12-01T09:30 (UTC), not '{s}'")))
}

/// One page of matching entries (newest first), and how many match in all.
pub fn query(conn: &Connection, who: &Identity, f: &AuditFilter) -> ApiResult<(Vec<Entry>, i64)> {
    let mut clauses: Vec<&str> = Vec::new();
    let mut args: Vec<Sql> = Vec::new();
    if !f.dataset.is_empty() {
        // dataset names are unique per owner only: the entries filed under the dataset's owner
        let ds = managed(conn, who, &f.dataset)?;
        clauses.push("dataset = ?");
        args.push(Sql::Text(ds.name));
        clauses.push("idx IN (SELECT idx FROM audit_readers WHERE owner_id = ?)");
        args.push(Sql::Integer(ds.owner_id));
    } else if !policy::is_admin(who) {
        // an owner's whole log: its datasets, its join domains' memberships, its identities
        clauses.push("idx IN (SELECT idx FROM audit_readers WHERE owner_id = ?)");
        args.push(Sql::Integer(who.id));
    }
    for (col, v) in [
        ("identity = ?", &f.identity),
        ("\"column\" = ?", &f.column),
        ("operation = ?", &f.operation),
        ("decision = ?", &f.decision),
    ] {
        if !v.is_empty() {
            clauses.push(col);
            args.push(Sql::Text(v.clone()));
        }
    }
    if let Some(t) = parse_time("from", &f.since)? {
        clauses.push("time >= ?");
        args.push(Sql::Integer(t));
    }
    if let Some(t) = parse_time("to", &f.until)? {
        clauses.push("time <= ?");
        args.push(Sql::Integer(t));
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    let total: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM audit{filter}"), args.clone(), |r| {
        r.get(0)
    })?;
    let offset = i64::from(f.page.unwrap_or(0)) * PAGE_SIZE;
    let mut paged = args.clone();
    paged.push(Sql::Integer(PAGE_SIZE));
    paged.push(Sql::Integer(offset));
    let mut st = conn.prepare(&format!("{}{filter} ORDER BY idx DESC LIMIT ? OFFSET ?", audit::SELECT))?;
    let rows = st.query_map(paged, audit::from_row)?;
    Ok((rows.collect::<crate::store::Result<Vec<_>>>()?, total))
}

fn entry_row(e: &Entry) -> String {
    let refused = e.decision == audit::REFUSED;
    let receipt = format!(
        "<details><summary>receipt #{}</summary><dl>\
         <dt>audit_index</dt><dd><code>{}</code></dd>\
         <dt>leaf_hash</dt><dd><code>{}</code></dd>\
         <dt>hash</dt><dd><code>{}</code></dd>\
         <dt>prev_hash</dt><dd><code>{}</code></dd>\
         <dt>params</dt><dd><code>{}</code></dd>{}</dl></details>",
        e.index,
        e.index,
        esc(&B64.encode(audit::leaf_hash(e))),
        esc(&e.hash),
        esc(&e.prev_hash),
        esc(&e.params),
        e.rid_digest
            .as_ref()
            .map(|d| format!("<dt>rid_digest</dt><dd><code>{}</code></dd>", esc(d)))
            .unwrap_or_default()
    );
    let opt = |s: &Option<String>| esc(s.as_deref().unwrap_or("—"));
    row(
        Some(if refused { "refused" } else { "issued" }),
        &[
            e.index.to_string(),
            esc(&clock::format_rfc3339(e.time)),
            opt(&e.identity),
            opt(&e.dataset),
            opt(&e.column),
            esc(&e.operation),
            format!("<span class=\"decision\">{}</span>", esc(&e.decision)),
            opt(&e.reason),
            e.rid_count.map(|n| n.to_string()).unwrap_or_else(|| "—".into()),
            receipt,
        ],
    )
}

fn filter_form(f: &AuditFilter) -> String {
    let text = |name: &str, label: &str, v: &str, kind: &str| {
        format!(
            "<label>{label} <input type=\"{kind}\" name=\"{name}\" id=\"filter-{name}\" value=\"{}\"></label>",
            esc(v)
        )
    };
    format!(
        "<form method=\"get\" action=\"/console/audit\" class=\"card filters\">{}{}{}{}\
         <label>decision <select name=\"decision\" id=\"filter-decision\">{}</select></label>{}{}\
         <button type=\"submit\" id=\"filter-apply\">filter</button> <a href=\"/console/audit\">clear</a></form>",
        text("dataset", "dataset", &f.dataset, "text"),
        text("identity", "identity", &f.identity, "text"),
        text("column", "column", &f.column, "text"),
        text("operation", "operation", &f.operation, "text"),
        options(
            &[("", "any"), ("issued", "issued"), ("refused", "refused")],
            &f.decision
        ),
        text("since", "from (UTC)", &f.since, "text"),
        text("until", "to (UTC)", &f.until, "text"),
    )
}

fn page_link(f: &AuditFilter, page: u32, label: &str, id: &str) -> String {
    let q: String = [
        ("dataset", &f.dataset),
        ("identity", &f.identity),
        ("column", &f.column),
        ("operation", &f.operation),
        ("decision", &f.decision),
        ("since", &f.since),
        ("until", &f.until),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k}={}&", seg(v)))
    .collect();
    format!(
        "<a href=\"{}\" id=\"{id}\">{}</a>",
        esc(&format!("/console/audit?{q}page={page}")),
        esc(label)
    )
}

/// `GET /console/audit?dataset=&identity=&column=&operation=&decision=&since=&until=&page=`
pub async fn page(State(st): State<AppState>, c: Console, ApiQuery(f): ApiQuery<AuditFilter>) -> Response {
    let who = c.who.clone();
    let q = f.clone();
    let (entries, total) = match st
        .db(move |conn, st| {
            st.integrate_audit(conn)?;
            query(conn, &who, &q)
        })
        .await
    {
        Ok(x) => x,
        Err(e) => {
            let body = filter_form(&f);
            return layout::page_with(&c, e.status, "Audit log", "audit", &[api::flash_of(&e)], &body);
        }
    };
    let page = f.page.unwrap_or(0);
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let mut nav = format!("<p class=\"pager\">{total} entries · page {} of {pages} ", page + 1);
    if page > 0 {
        nav += &page_link(&f, page - 1, "← newer", "page-newer");
    }
    if i64::from(page) + 1 < pages {
        nav += " ";
        nav += &page_link(&f, page + 1, "older →", "page-older");
    }
    nav += "</p>";
    let rows: Vec<String> = entries.iter().map(entry_row).collect();
    let scope = if c.is_admin() {
        "Every entry of this keyhost's log, newest first."
    } else {
        "The entries of the datasets you own, newest first."
    };
    let body = format!(
        "<p class=\"hint\">{scope} Refusals are highlighted. Operations: sum, decrypt, compare (answer keys), \
         grant.create, token.create, budget.set, auth, …</p>{}{nav}{}{nav}",
        filter_form(&f),
        table(
            &[
                "#",
                "time (UTC)",
                "identity",
                "dataset",
                "column",
                "operation",
                "decision",
                "reason",
                "rows",
                "receipt"
            ],
            &rows,
            "No entries match."
        ),
    );
    layout::page(&c, "Audit log", "audit", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_from_browser_fields_are_utc() {
        assert_eq!(parse_time("from", "").unwrap(), None);
        let a = parse_time("from", "2026-12-01T09:30").unwrap().unwrap();
        let b = parse_time("from", "2026-12-01T09:30:00Z").unwrap().unwrap();
        assert_eq!(a, b);
        let e = parse_time("to", "yesterday").unwrap_err();
        assert!(e.message.contains("to must be a time"), "{}", e.message);
    }
}
