//! Chain verification and the signed checkpoint: the API's `GET /v1/audit/verify` (admins)
//! and `GET /v1/audit/checkpoint` handlers, and the checkpoint checked against the log and
//! this keyhost's checkpoint key.

use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use super::api;
use super::html::{esc, row, table};
use super::layout;
use super::session::Console;
use crate::domain::checkpoint::{self, Checkpoint};
use crate::error::{ApiError, ApiResult};
use crate::http::routes::audit as api_audit;
use crate::state::AppState;

fn problems_table(v: &Value) -> String {
    let rows: Vec<String> = v["problems"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    row(
                        Some("refused"),
                        &[esc(&p["index"].to_string()), esc(p["problem"].as_str().unwrap_or(""))],
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    table(&["entry", "problem"], &rows, "")
}

fn verification(v: &Value) -> String {
    let ok = v["ok"].as_bool().unwrap_or(false);
    let (class, text) = if ok {
        ("flash ok", "the hash chain is intact")
    } else {
        ("flash err", "the hash chain is broken")
    };
    format!(
        "<div class=\"{class}\" id=\"chain-status\"><p><b>{text}</b>: {} entries, head <code>{}</code></p></div>{}",
        esc(&v["entries"].to_string()),
        esc(v["head"].as_str().unwrap_or("")),
        problems_table(v)
    )
}

fn checkpoint_html(cp: &Checkpoint, problems: &[crate::domain::audit::AuditProblem]) -> String {
    let status = if problems.is_empty() {
        "<div class=\"flash ok\" id=\"checkpoint-status\"><p><b>signature valid</b> (this keyhost's checkpoint key) \
         and the Merkle root matches the log</p></div>"
            .to_owned()
    } else {
        let list: String = problems
            .iter()
            .map(|p| format!("<li>{}</li>", esc(&p.problem)))
            .collect();
        format!("<div class=\"flash err\" id=\"checkpoint-status\"><ul>{list}</ul></div>")
    };
    let json = serde_json::to_string_pretty(cp).unwrap_or_default();
    format!(
        "{status}<dl class=\"facts\"><dt>keyhost</dt><dd><code>{}</code></dd><dt>tree size</dt><dd>{}</dd>\
         <dt>root</dt><dd><code>{}</code></dd><dt>signed at</dt><dd>{}</dd><dt>public key</dt><dd><code>{}</code></dd></dl>\
         <p class=\"hint\">Keep this JSON: <code>ghostpii audit verify --checkpoint FILE</code> later proves the first \
         {} entries were not changed.</p><pre id=\"checkpoint-json\">{}</pre>",
        esc(&cp.keyhost_id),
        cp.tree_size,
        esc(&cp.root),
        esc(&cp.time),
        esc(&cp.public_key),
        cp.tree_size,
        esc(&json)
    )
}

/// `GET /console/checkpoint`
pub async fn page(State(st): State<AppState>, c: Console) -> Response {
    let result: ApiResult<String> = async {
        let chain = if c.is_admin() {
            let v = api::call(api_audit::verify(State(st.clone()), api::caller(&c))).await?;
            verification(&v)
        } else {
            "<p class=\"hint\">Only an admin verifies the whole chain (it covers every dataset).</p>".to_owned()
        };
        let v = api::call(api_audit::checkpoint(State(st.clone()), api::caller(&c))).await?;
        let cp: Checkpoint = serde_json::from_value(v).map_err(|e| ApiError::internal("console checkpoint", &e))?;
        let cp2 = cp.clone();
        let problems = st
            .db(move |conn, st| {
                let key = st.signer().verifying_key();
                Ok(checkpoint::verify_log(conn, Some(st.keyhost_id()), &cp2, Some(&key))?)
            })
            .await?;
        Ok(format!(
            "<h2>Hash chain</h2>{chain}<h2>Latest signed checkpoint</h2>{}",
            checkpoint_html(&cp, &problems)
        ))
    }
    .await;
    match result {
        Ok(body) => layout::page(&c, "Checkpoint", "checkpoint", &body),
        Err(e) => api::failed(&c, &e),
    }
}
