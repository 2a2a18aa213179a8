//! Identities and tokens: list (admins: all; owners: the analysts they manage, `OWNER/NAME`),
//! create an identity, issue a token (shown once, on the next page only), revoke a token,
//! rotate the signed-in token. Each action calls the
//! API's handler (`POST /v1/identities`, `POST /v1/tokens`, `DELETE /v1/tokens/{id}`,
//! `POST /v1/tokens/rotate`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::api;
use super::bare;
use super::html::{button_form, csrf_field, esc, options, row, table};
use super::layout;
use super::session::{Console, ConsolePost};
use crate::clock;
use crate::domain::identities::{self, Identity};
use crate::domain::tokens::{self, TokenInfo};
use crate::error::{ApiError, ApiResult};
use crate::http::routes::{identities as api_identities, tokens as api_tokens};
use crate::state::AppState;

const ROLES: &[(&str, &str)] = &[
    ("member", "member (analyst)"),
    ("owner", "owner (creates datasets)"),
    ("admin", "admin"),
];

fn time(t: Option<i64>) -> String {
    t.map(clock::format_rfc3339).unwrap_or_else(|| "—".into())
}

fn token_rows(c: &Console, list: &[TokenInfo], mine: Option<i64>) -> Vec<String> {
    let now = clock::now_micros();
    list.iter()
        .map(|t| {
            let (status, class) = match (t.revoked_at, t.expires_at) {
                (Some(_), _) => ("revoked", Some("refused")),
                (None, Some(e)) if e <= now => ("expired", Some("refused")),
                _ => ("active", None),
            };
            let action = if Some(t.token_id) == mine {
                "this session".to_owned()
            } else if status == "active" {
                button_form(
                    &format!("/console/tokens/{}/revoke", t.token_id),
                    &c.csrf,
                    "revoke",
                    "danger",
                )
            } else {
                String::new()
            };
            row(
                class,
                &[
                    t.token_id.to_string(),
                    esc(&t.identity),
                    esc(&time(Some(t.created_at))),
                    esc(&time(t.expires_at)),
                    esc(status),
                    action,
                ],
            )
        })
        .collect()
}

/// `GET /console/identities`
pub async fn page(State(st): State<AppState>, c: Console) -> Response {
    let admin = c.is_admin();
    let owner = c.who.role == identities::Role::Owner;
    let owner_id = c.who.id;
    let token = c.token();
    let loaded = st
        .db(move |conn, _| {
            let mine = match &token {
                Some(t) => tokens::active_id(conn, t)?.map(|(id, _)| id),
                None => None,
            };
            let (ids, toks): (Vec<Identity>, Vec<TokenInfo>) = if admin {
                (identities::list(conn)?, tokens::list(conn, None)?)
            } else if owner {
                // the analysts this owner manages, and their tokens
                let ids: Vec<Identity> = identities::list_for_owner(conn, owner_id)?
                    .into_iter()
                    .filter(|i| i.manager_id == Some(owner_id))
                    .collect();
                let toks = tokens::list(conn, None)?
                    .into_iter()
                    .filter(|t| ids.iter().any(|i| i.name == t.identity))
                    .collect();
                (ids, toks)
            } else {
                (Vec::new(), Vec::new())
            };
            Ok((mine, ids, toks))
        })
        .await;
    let (mine, ids, toks) = match loaded {
        Ok(x) => x,
        Err(e) => return api::failed(&c, &e),
    };
    let rotate = format!(
        "<h2>Your token</h2><form method=\"post\" action=\"/console/tokens/rotate\" class=\"inline\">{}\
         <button type=\"submit\" id=\"rotate\">rotate my token</button></form>\
         <p class=\"hint\">Issues a new token for {} and revokes the one this session signed in with, in one step; \
         the new token is shown once and this session goes on with it.</p>",
        csrf_field(&c.csrf),
        esc(&c.who.name)
    );
    if !admin && !owner {
        let body = format!(
            "<p class=\"hint\">Only admins and owners list identities and issue or revoke other identities' tokens.</p>{rotate}"
        );
        return layout::page(&c, "Identities and tokens", "identities", &body);
    }
    let id_rows: Vec<String> = ids
        .iter()
        .map(|i| {
            row(
                None,
                &[
                    i.id.to_string(),
                    esc(&i.name),
                    esc(i.role.as_str()),
                    esc(&time(Some(i.created_at))),
                ],
            )
        })
        .collect();
    let names: Vec<(&str, &str)> = ids.iter().map(|i| (i.name.as_str(), i.name.as_str())).collect();
    let roles: &[(&str, &str)] = if admin { ROLES } else { &ROLES[..1] };
    let scope = if admin {
        String::new()
    } else {
        format!(
            "<p class=\"hint\" id=\"identities-scope\">The analysts {} manages: a new one named NAME is created as \
             <code>{}/NAME</code>; only {} grants to it and issues its tokens (share one with another owner from the \
             API or CLI: <code>ghostpii identity share</code>).</p>",
            esc(&c.who.name),
            esc(&c.who.name),
            esc(&c.who.name)
        )
    };
    let body = format!(
        "<h2>Identities</h2>{scope}{}\
         <form method=\"post\" action=\"/console/identities\" class=\"card\">{}\
         <label>name <input name=\"name\" id=\"identity-name\" required maxlength=\"128\"></label>\
         <label>role <select name=\"role\" id=\"identity-role\">{}</select></label>\
         <button type=\"submit\" id=\"identity-create\">create identity</button></form>\
         <h2>Tokens</h2>{}\
         <form method=\"post\" action=\"/console/tokens\" class=\"card\">{}\
         <label>identity <select name=\"identity\" id=\"token-identity\">{}</select></label>\
         <label>valid for (days) <input type=\"number\" name=\"ttl_days\" id=\"token-days\" min=\"1\" max=\"3660\" step=\"1\" value=\"30\" required></label>\
         <button type=\"submit\" id=\"token-issue\">issue token</button></form>{rotate}",
        table(&["id", "name", "role", "created (UTC)"], &id_rows, "No identities."),
        csrf_field(&c.csrf),
        options(roles, "member"),
        table(
            &["id", "identity", "created (UTC)", "expires (UTC)", "status", ""],
            &token_rows(&c, &toks, mine),
            "No tokens."
        ),
        csrf_field(&c.csrf),
        options(&names, ""),
    );
    layout::page(&c, "Identities and tokens", "identities", &body)
}

/// `POST /console/identities` (`name`, `role`)
pub async fn create(State(st): State<AppState>, p: ConsolePost) -> Response {
    let result = async {
        let req = api::body(json!({"name": p.field("name"), "role": p.field("role")}))?;
        let v = api::call(api_identities::create(State(st), api::caller(&p.c), req)).await?;
        Ok(format!(
            "identity '{}' created (role {})",
            v["name"].as_str().unwrap_or(""),
            v["role"].as_str().unwrap_or("")
        ))
    }
    .await;
    api::done(&p.c, result, "/console/identities")
}

/// Show a newly issued token once (from the API's issued-token answer).
fn show_secret(c: &Console, v: &Value, what: &str) -> ApiResult<()> {
    let secret = v["token"]
        .as_str()
        .ok_or_else(|| ApiError::internal("console", &"issued token without secret"))?;
    c.flash_secret(
        format!(
            "{what} token {} for '{}' (expires {})",
            v["token_id"],
            v["identity"].as_str().unwrap_or(""),
            v["expires_at"].as_str().unwrap_or("never")
        ),
        Zeroizing::new(secret.to_owned()),
    );
    Ok(())
}

/// `POST /console/tokens` (`identity`, `ttl_days`)
pub async fn issue(State(st): State<AppState>, p: ConsolePost) -> Response {
    let result = async {
        let days = p.field("ttl_days");
        let days: i64 = days
            .parse()
            .map_err(|_| ApiError::invalid(format!("valid for (days) must be a whole number, not '{days}'")))?;
        let req = api::body(json!({"identity": p.field("identity"), "ttl_seconds": days.saturating_mul(86_400)}))?;
        let v = api::call(api_tokens::create(State(st), api::caller(&p.c), req)).await?;
        show_secret(&p.c, &v, "issued")
    }
    .await;
    if let Err(e) = result {
        return api::done(&p.c, Err(e), "/console/identities");
    }
    bare::redirect("/console/identities")
}

/// `POST /console/tokens/{token_id}/revoke`
pub async fn revoke(State(st): State<AppState>, Path(token_id): Path<String>, p: ConsolePost) -> Response {
    let result = api::call(api_tokens::revoke(State(st), api::caller(&p.c), Path(token_id.clone())))
        .await
        .map(|_| format!("token {token_id} revoked"));
    api::done(&p.c, result, "/console/identities")
}

/// `POST /console/tokens/rotate`: rotate the token this session signed in with.
pub async fn rotate(State(st): State<AppState>, p: ConsolePost) -> Response {
    let result = async {
        let token =
            p.c.token()
                .ok_or_else(|| ApiError::conflict("the console session ended while rotating"))?;
        let mut headers = HeaderMap::new();
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.as_str()))
            .map_err(|_| ApiError::invalid("the session's token cannot be sent"))?;
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
        let v = api::call(api_tokens::rotate(State(st), api::caller(&p.c), headers, Bytes::new())).await?;
        let secret = v["token"].as_str().unwrap_or_default().to_owned();
        p.c.replace_token(Zeroizing::new(secret));
        show_secret(&p.c, &v, "rotated: new")
    }
    .await;
    if let Err(e) = result {
        return api::done(&p.c, Err(e), "/console/identities");
    }
    bare::redirect("/console/identities")
}
