//! Privacy budgets per identity on a dataset: ε spent and the (ε, δ) total, set and reset
//! through the API's `PUT /v1/budget` and `POST /v1/budget/reset` handlers.

use crate::store::Connection;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{json, Value};

use super::api;
use super::charts::{self, BudgetRow};
use super::html::{csrf_field, esc, link, num, row, seg, table};
use super::layout;
use super::lookup::managed;
use super::session::{Console, ConsolePost};
use crate::domain::budget;
use crate::domain::datasets::Dataset;
use crate::error::{ApiError, ApiResult};
use crate::http::routes::budget as api_budget;
use crate::state::AppState;

/// Identities with a budget account or an active aggregate grant on `ds`, with their state
/// as `GET /v1/budget` reports it.
pub fn rows(conn: &Connection, ds: &Dataset) -> ApiResult<Vec<BudgetRow>> {
    let mut st = conn.prepare(
        "SELECT id, name FROM identities WHERE id IN (
             SELECT identity_id FROM budget_ledger WHERE dataset_id = ?1
             UNION SELECT identity_id FROM grants WHERE dataset_id = ?1 AND revoked_at IS NULL
                   AND operation IN ('aggregate', 'moments'))
         ORDER BY name",
    )?;
    let ids = st
        .query_map([ds.id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
        .collect::<crate::store::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(ids.len());
    for (id, name) in ids {
        let s = budget::state_json(conn, &name, id, &ds.name, ds.id)?;
        let f = |k: &str| s.get(k).and_then(Value::as_f64);
        out.push(BudgetRow {
            identity: name,
            epsilon_spent: f("epsilon_spent").unwrap_or(0.0),
            epsilon_total: f("epsilon_total"),
            delta: f("delta"),
        });
    }
    Ok(out)
}

fn total(t: Option<f64>) -> String {
    t.map(num).unwrap_or_else(|| "no limit".into())
}

/// `GET /console/datasets/{dataset}/budgets`
pub async fn page(State(st): State<AppState>, c: Console, Path(name): Path<String>) -> Response {
    let who = c.who.clone();
    let loaded = st
        .db(move |conn, _| {
            let ds = managed(conn, &who, &name)?;
            let rows = rows(conn, &ds)?;
            Ok((ds, rows))
        })
        .await;
    let (ds, rows) = match loaded {
        Ok(x) => x,
        Err(e) => return api::failed(&c, &e),
    };
    let base = format!("/console/datasets/{}/budgets", seg(&ds.name));
    let table_rows: Vec<String> = rows
        .iter()
        .map(|r| {
            let set = format!(
                "<form method=\"post\" action=\"{}/set\" class=\"inline\">{}\
                 <input type=\"hidden\" name=\"identity\" value=\"{}\">\
                 <input type=\"number\" name=\"total\" min=\"0\" step=\"any\" required aria-label=\"new total\" class=\"short\">\
                 <input type=\"number\" name=\"delta\" min=\"0\" max=\"1\" step=\"any\" placeholder=\"δ (default)\" aria-label=\"new delta\" class=\"short\">\
                 <button type=\"submit\">set</button></form>",
                esc(&base),
                csrf_field(&c.csrf),
                esc(&r.identity),
            );
            let reset = format!(
                "<form method=\"post\" action=\"{}/reset\" class=\"inline\">{}\
                 <input type=\"hidden\" name=\"identity\" value=\"{}\"><button type=\"submit\" class=\"danger\">reset spent</button></form>",
                esc(&base),
                csrf_field(&c.csrf),
                esc(&r.identity)
            );
            row(
                None,
                &[
                    esc(&r.identity),
                    num(r.epsilon_spent),
                    esc(&total(r.epsilon_total)),
                    r.delta.map(|d| esc(&format!("{d:e}"))).unwrap_or_default(),
                    set + &reset,
                ],
            )
        })
        .collect();
    let add = format!(
        "<h2>Set a budget for another identity</h2><form method=\"post\" action=\"{}/set\" class=\"card\">{}\
         <label>identity <input name=\"identity\" required></label>\
         <label>total <input type=\"number\" name=\"total\" min=\"0\" step=\"any\" required></label>\
         <label>δ <input type=\"number\" name=\"delta\" min=\"0\" max=\"1\" step=\"any\" placeholder=\"keyhost default\"></label>\
         <button type=\"submit\">set budget</button></form>",
        esc(&base),
        csrf_field(&c.csrf),
    );
    let body = format!(
        "<p>{} · spent and total privacy loss per identity on this dataset; a DP answer key \
         that would exceed the total is refused.</p>{}{}{add}",
        back_link(&ds.name),
        charts::budgets(&rows),
        table(
            &["identity", "ε spent", "ε total", "δ", "change"],
            &table_rows,
            "No budgets yet."
        ),
    );
    layout::page(&c, &format!("Budgets of {}", ds.name), "datasets", &body)
}

fn back_link(dataset: &str) -> String {
    link(
        &format!("/console/datasets/{}", seg(dataset)),
        &format!("back to {dataset}"),
    )
}

fn parse_total(s: &str) -> ApiResult<f64> {
    s.parse::<f64>()
        .map_err(|_| ApiError::invalid(format!("total must be a number, not '{s}'")))
}

/// `POST /console/datasets/{dataset}/budgets/set` (`identity`, `total`, `delta` optional)
pub async fn set(State(st): State<AppState>, Path(name): Path<String>, p: ConsolePost) -> Response {
    let to = format!("/console/datasets/{}/budgets", seg(&name));
    let identity = p.field("identity").to_owned();
    let result = async {
        let delta = match p.field("delta").trim() {
            "" => Value::Null,
            d => json!(parse_total(d)?),
        };
        let req = api::body(json!({
            "identity": identity, "dataset": name, "total": parse_total(p.field("total"))?, "delta": delta,
        }))?;
        let v = api::call(api_budget::set(State(st), api::caller(&p.c), req)).await?;
        Ok(format!(
            "budget of '{identity}' set: ε total {}, δ {}",
            total(v["epsilon_total"].as_f64()),
            v["delta"]
                .as_f64()
                .map(|d| format!("{d:e}"))
                .unwrap_or_else(|| "default".into())
        ))
    }
    .await;
    api::done(&p.c, result, &to)
}

/// `POST /console/datasets/{dataset}/budgets/reset` (`identity`)
pub async fn reset(State(st): State<AppState>, Path(name): Path<String>, p: ConsolePost) -> Response {
    let to = format!("/console/datasets/{}/budgets", seg(&name));
    let identity = p.field("identity").to_owned();
    let result = async {
        let req = api::body(json!({"identity": identity, "dataset": name}))?;
        api::call(api_budget::reset(State(st), api::caller(&p.c), req)).await?;
        Ok(format!("spent budget of '{identity}' reset to 0"))
    }
    .await;
    api::done(&p.c, result, &to)
}
