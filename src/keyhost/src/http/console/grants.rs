//! Grants of a dataset: the active grants with a revoke button each, and a form that offers
//! the grant kinds and their parameters. Adding and revoking call the API's
//! `POST /v1/grants` and `DELETE /v1/grants/{id}` handlers; a refused form is shown again
//! with the API's message and the values entered.

use std::collections::HashMap;

use crate::store::Connection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::api;
use super::bare;
use super::html::{csrf_field, esc, link, options, row, seg, table};
use super::layout;
use super::lookup::{columns_of, managed};
use super::session::{Console, ConsolePost, Flash};
use crate::domain::datasets::Dataset;
use crate::domain::grants::{self, Grant};
use crate::domain::identities::{self, Identity};
use crate::domain::policy;
use crate::error::{ApiError, ApiResult};
use crate::http::routes::grants as api_grants;
use crate::state::AppState;

const OPERATIONS: &[(&str, &str)] = &[
    ("aggregate", "aggregate (sum, mean, count)"),
    ("decrypt", "decrypt (row values)"),
    ("compare", "compare (comparison tokens)"),
    ("moments", "moments (variance, covariance, fits)"),
];

struct GrantsPage {
    ds: Dataset,
    grants: Vec<Grant>,
    columns: Vec<String>,
    /// Identity names to offer (admins: all; owners: those they manage or were shared).
    identities: Vec<String>,
}

fn load(conn: &Connection, who: &Identity, name: &str) -> ApiResult<GrantsPage> {
    let ds = managed(conn, who, name)?;
    let identities = if policy::is_admin(who) {
        identities::list(conn)?.into_iter().map(|i| i.name).collect()
    } else {
        identities::list_for_owner(conn, who.id)?
            .into_iter()
            .map(|i| i.name)
            .collect()
    };
    // dataset names are unique per owner only: the grants of this dataset
    let grants = grants::list(conn, Some(&ds.name), None, None)?
        .into_iter()
        .filter(|g| g.dataset_id == ds.id)
        .collect();
    Ok(GrantsPage {
        grants,
        columns: columns_of(conn, ds.id)?.into_iter().map(|(c, _)| c.name).collect(),
        identities,
        ds,
    })
}

fn params_text(g: &Grant) -> String {
    match serde_json::to_value(&g.params) {
        Ok(Value::Object(m)) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

fn field<'a>(prefill: &'a HashMap<String, String>, name: &str) -> &'a str {
    prefill.get(name).map(String::as_str).unwrap_or("")
}

fn input(prefill: &HashMap<String, String>, name: &str, label: &str, kind: &str, extra: &str, hint: &str) -> String {
    format!(
        "<label>{} <input type=\"{kind}\" name=\"{name}\" id=\"grant-{name}\" value=\"{}\" {extra}><small>{}</small></label>",
        esc(label),
        esc(field(prefill, name)),
        esc(hint)
    )
}

fn form(p: &GrantsPage, csrf: &str, prefill: &HashMap<String, String>) -> String {
    let action = format!("/console/datasets/{}/grants", seg(&p.ds.name));
    let idents: String = p
        .identities
        .iter()
        .map(|n| format!("<option value=\"{}\">", esc(n)))
        .collect();
    let column = if p.columns.is_empty() {
        input(
            prefill,
            "column",
            "column",
            "text",
            "required",
            "no column is registered yet",
        )
    } else {
        let cols: Vec<(&str, &str)> = p.columns.iter().map(|c| (c.as_str(), c.as_str())).collect();
        format!(
            "<label>column <select name=\"column\" id=\"grant-column\">{}</select></label>",
            options(&cols, field(prefill, "column"))
        )
    };
    let op = field(prefill, "operation");
    format!(
        "<form method=\"post\" action=\"{}\" class=\"card\" id=\"grant-form\">{}\
         <label>identity <input name=\"identity\" id=\"grant-identity\" list=\"identity-names\" required value=\"{}\"></label>\
         <datalist id=\"identity-names\">{idents}</datalist>{column}\
         <label>operation <select name=\"operation\" id=\"grant-operation\">{}</select></label>\
         <fieldset><legend>aggregate parameters (leave empty for none)</legend>{}{}{}{}</fieldset>\
         <fieldset><legend>compare parameters (constants in the column's own values: numbers or dates)</legend>{}{}{}{}</fieldset>\
         <p class=\"hint\">decrypt grants take no parameters.</p>\
         <button type=\"submit\" id=\"grant-add\">add grant</button></form>",
        esc(&action),
        csrf_field(csrf),
        esc(field(prefill, "identity")),
        options(OPERATIONS, if op.is_empty() { "aggregate" } else { op }),
        input(prefill, "min_rows", "min_rows", "number", "min=\"0\" step=\"1\"", "smallest number of rows an answer may cover"),
        input(prefill, "epsilon", "epsilon", "number", "min=\"0\" step=\"any\"", "differential privacy per answer (ε > 0)"),
        input(prefill, "delta", "delta", "number", "min=\"0\" step=\"any\"", "with epsilon: Gaussian noise under zCDP"),
        input(prefill, "budget", "budget", "number", "min=\"0\" step=\"any\"", "total ε of the identity on the dataset"),
        input(prefill, "constants", "constants", "text", "", "comma-separated list, e.g. 18, 21, 65"),
        input(prefill, "range_lo", "range from", "text", "", "inclusive lower end"),
        input(prefill, "range_hi", "range to", "text", "", "inclusive upper end"),
        input(prefill, "max_constants", "max_constants", "number", "min=\"0\" step=\"1\"", "most distinct constants"),
    )
}

fn render(
    c: &Console,
    status: StatusCode,
    p: &GrantsPage,
    prefill: &HashMap<String, String>,
    extra: &[Flash],
) -> Response {
    let back = format!("/console/datasets/{}", seg(&p.ds.name));
    let rows: Vec<String> = p
        .grants
        .iter()
        .map(|g| {
            let revoke = format!(
                "<form method=\"post\" action=\"/console/grants/{}/revoke\" class=\"inline\">{}\
                 <input type=\"hidden\" name=\"dataset\" value=\"{}\"><button type=\"submit\" class=\"danger\" id=\"revoke-{}\">revoke</button></form>",
                g.grant_id,
                csrf_field(&c.csrf),
                esc(&p.ds.name),
                g.grant_id
            );
            row(
                None,
                &[
                    g.grant_id.to_string(),
                    esc(&g.identity),
                    esc(&g.column),
                    esc(g.operation.as_str()),
                    format!("<code>{}</code>", esc(&params_text(g))),
                    esc(&crate::clock::format_rfc3339(g.created_at)),
                    revoke,
                ],
            )
        })
        .collect();
    let body = format!(
        "<p>{}</p><h2>Active grants</h2>{}<h2>Add a grant</h2>{}",
        link(&back, &format!("back to {}", p.ds.name)),
        table(
            &[
                "id",
                "identity",
                "column",
                "operation",
                "parameters",
                "created (UTC)",
                ""
            ],
            &rows,
            "No active grants: only the owner and admins get answer keys."
        ),
        form(p, &c.csrf, prefill)
    );
    layout::page_with(c, status, &format!("Grants of {}", p.ds.name), "datasets", extra, &body)
}

/// `GET /console/datasets/{dataset}/grants`
pub async fn page(State(st): State<AppState>, c: Console, Path(name): Path<String>) -> Response {
    let who = c.who.clone();
    match st.db(move |conn, _| load(conn, &who, &name)).await {
        Ok(p) => render(&c, StatusCode::OK, &p, &HashMap::new(), &[]),
        Err(e) => api::failed(&c, &e),
    }
}

/// A form value in the column's logical domain: an integer, a number, or else a string
/// (dates and datetimes), as the API takes it.
fn constant(s: &str) -> Value {
    if let Ok(i) = s.parse::<i64>() {
        return json!(i);
    }
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() => json!(f),
        _ => json!(s),
    }
}

/// The grant's `params` from the form: only the fields filled in, numbers checked here so
/// the message names the field; everything else the API validates.
pub fn params_from_form(form: &HashMap<String, String>) -> ApiResult<Value> {
    let get = |k: &str| form.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    let mut m = Map::new();
    for k in ["min_rows", "max_constants"] {
        if let Some(v) = get(k) {
            let n: u64 = v
                .parse()
                .map_err(|_| ApiError::invalid(format!("{k} must be a whole number of at least 0, not '{v}'")))?;
            m.insert(k.into(), json!(n));
        }
    }
    for k in ["epsilon", "delta", "budget"] {
        if let Some(v) = get(k) {
            let x: f64 = v
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite())
                .ok_or_else(|| ApiError::invalid(format!("{k} must be a number, not '{v}'")))?;
            m.insert(k.into(), json!(x));
        }
    }
    if let Some(v) = get("constants") {
        let list: Vec<Value> = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(constant)
            .collect();
        m.insert("constants".into(), Value::Array(list));
    }
    match (get("range_lo"), get("range_hi")) {
        (Some(lo), Some(hi)) => {
            m.insert("range".into(), json!([constant(lo), constant(hi)]));
        }
        (None, None) => {}
        _ => {
            return Err(ApiError::invalid(
                "a range needs both ends ('range from' and 'range to')",
            ))
        }
    }
    Ok(if m.is_empty() { Value::Null } else { Value::Object(m) })
}

/// `POST /console/datasets/{dataset}/grants`
pub async fn create(State(st): State<AppState>, Path(name): Path<String>, p: ConsolePost) -> Response {
    let result = async {
        let req = api::body(json!({
            "identity": p.field("identity"),
            "dataset": name,
            "column": p.field("column"),
            "operation": p.field("operation"),
            "params": params_from_form(&p.form)?,
        }))?;
        api::call(api_grants::create(State(st.clone()), api::caller(&p.c), req)).await
    }
    .await;
    match result {
        Ok(v) => {
            p.c.flash(
                true,
                format!(
                    "grant {} added: '{}' may {} column '{}'",
                    v["grant_id"],
                    v["identity"].as_str().unwrap_or_default(),
                    p.field("operation"),
                    p.field("column")
                ),
            );
            bare::redirect(&format!("/console/datasets/{}/grants", seg(&name)))
        }
        Err(e) => {
            let who = p.c.who.clone();
            let n = name.clone();
            match st.db(move |conn, _| load(conn, &who, &n)).await {
                Ok(page) => render(&p.c, e.status, &page, &p.form, &[api::flash_of(&e)]),
                Err(e2) => api::failed(&p.c, &e2),
            }
        }
    }
}

/// `POST /console/grants/{grant_id}/revoke` (`dataset`: where to go back to)
pub async fn revoke(State(st): State<AppState>, Path(grant_id): Path<String>, p: ConsolePost) -> Response {
    let to = format!("/console/datasets/{}/grants", seg(p.field("dataset")));
    let result = api::call(api_grants::revoke(State(st), api::caller(&p.c), Path(grant_id.clone())))
        .await
        .map(|_| format!("grant {grant_id} revoked"));
    api::done(&p.c, result, &to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn params_keep_only_filled_fields() {
        assert_eq!(
            params_from_form(&form(&[("min_rows", ""), ("epsilon", " ")])).unwrap(),
            Value::Null
        );
        let v = params_from_form(&form(&[("min_rows", "5"), ("epsilon", "0.5")])).unwrap();
        assert_eq!(v, json!({"min_rows": 5, "epsilon": 0.5}));
        let v = params_from_form(&form(&[
            ("constants", "18, 2000-01-01,"),
            ("range_lo", "1"),
            ("range_hi", "9"),
        ]))
        .unwrap();
        assert_eq!(v, json!({"constants": [18, "2000-01-01"], "range": [1, 9]}));
    }

    #[test]
    fn bad_numbers_name_the_field() {
        let e = params_from_form(&form(&[("min_rows", "-1")])).unwrap_err();
        assert!(e.message.contains("min_rows"), "{}", e.message);
        let e = params_from_form(&form(&[("epsilon", "lots")])).unwrap_err();
        assert!(e.message.contains("epsilon"), "{}", e.message);
        let e = params_from_form(&form(&[("range_lo", "1")])).unwrap_err();
        assert!(e.message.contains("both ends"), "{}", e.message);
    }
}
