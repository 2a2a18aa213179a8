//! The bridge to the JSON API's handlers: the console builds the same request body the API
//! would get and calls the handler with the signed-in identity as its [`Caller`].

use std::future::Future;

use axum::response::Response;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::bare;
use super::layout;
use super::session::{Console, Flash};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, Caller};

/// A request body for a handler, built from the form's fields.
pub fn body<T: DeserializeOwned>(v: Value) -> ApiResult<ApiJson<T>> {
    serde_json::from_value(v)
        .map(ApiJson)
        .map_err(|e| ApiError::invalid(format!("the form does not make a valid request: {e}")))
}

pub fn caller(c: &Console) -> Caller {
    Caller(c.who.clone())
}

/// Await a handler and unwrap its JSON answer (as the API would send it).
pub async fn call<T: Serialize>(f: impl Future<Output = ApiResult<Json<T>>>) -> ApiResult<Value> {
    let Json(answer) = f.await?;
    serde_json::to_value(answer).map_err(|e| ApiError::internal("the console reading an API answer", &e))
}

/// An API error as a one-shot message (every error a console page shows goes through here, so
/// the cause of an internal one is logged here).
pub fn flash_of(e: &ApiError) -> Flash {
    e.log_cause("console page");
    Flash {
        ok: false,
        text: format!("refused ({}): {}", e.reason, e.message),
        secret: None,
    }
}

/// After a POST: on success remember `ok` for the next page and go to `to`; on refusal
/// remember the API's message and go to `to` too (the page shows it).
pub fn done(c: &Console, result: ApiResult<String>, to: &str) -> Response {
    match result {
        Ok(text) => c.flash(true, text),
        Err(e) => {
            let f = flash_of(&e);
            c.flash(false, f.text);
        }
    }
    bare::redirect(to)
}

/// A page that could not be built (unknown dataset, not its owner, database failure).
pub fn failed(c: &Console, e: &ApiError) -> Response {
    layout::page_with(
        c,
        e.status,
        "Refused",
        "",
        &[flash_of(e)],
        "<p><a href=\"/console/datasets\">back to the datasets</a></p>",
    )
}
