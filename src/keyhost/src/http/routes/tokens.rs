use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::guard;
use super::identities::manageable;
use crate::clock;
use crate::domain::audit::{self, NewEntry};
use crate::domain::identities;
use crate::domain::orgs;
use crate::domain::policy;
use crate::domain::tokens::{self, DEFAULT_TTL_SECONDS};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{path_id, ApiJson, ApiQuery, Caller};
use crate::state::AppState;
use crate::store::Connection;

/// Longest token lifetime accepted: 10 years.
const MAX_TTL_SECONDS: i64 = 10 * 366 * 24 * 3600;

#[derive(Deserialize)]
pub struct CreateToken {
    identity: String,
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

/// `POST /v1/tokens` (admin, or the owner that manages the identity). The secret is in this response only.
pub async fn create(
    State(st): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<CreateToken>,
) -> ApiResult<Json<Value>> {
    st.db(move |conn, _| {
        let ttl = req.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
        let mut entry =
            NewEntry::new(&who, "token.create").params(json!({"identity": req.identity, "ttl_seconds": ttl}));
        if let Some(o) = org_reader(&who) {
            entry.add_reader(o);
        }
        let lead = orgs::delegation(conn, who.id)?;
        guard(conn, &entry, may_manage_tokens(&who, lead.is_some(), "issue tokens"))?;
        let found = token_target(conn, &who, lead.is_some(), &req.identity);
        let ident = super::guard_found(conn, &entry, found)?;
        if !(1..=MAX_TTL_SECONDS).contains(&ttl) {
            return Err(ApiError::invalid(format!(
                "ttl_seconds must be between 1 and {MAX_TTL_SECONDS}"
            )));
        }
        if let Some(d) = lead {
            // a lead's tokens live at most max_ttl_seconds and never beyond the delegation
            let end = clock::now_micros().saturating_add(ttl.saturating_mul(1_000_000));
            if ttl > d.max_ttl_seconds || end > d.expires_at {
                let refused = ApiError::denied(format!(
                    "ttl_seconds {ttl} is beyond the delegation of identity '{}': at most {} seconds, and not \
                     after {}",
                    who.name,
                    d.max_ttl_seconds,
                    clock::format_rfc3339(d.expires_at)
                ));
                return Err(crate::domain::audit::refuse(conn, entry, refused));
            }
        }
        let tx = conn.transaction()?;
        let (info, secret) = tokens::issue(&tx, &ident, Some(ttl))?;
        entry.params = json!({"identity": ident.name, "ttl_seconds": ttl, "token_id": info.token_id});
        audit::append(&tx, entry)?;
        tx.commit()?;
        Ok(Json(issued_json(&info, &secret)))
    })
    .await
}

#[derive(Deserialize)]
pub struct TokenFilter {
    identity: Option<String>,
}

/// `GET /v1/tokens?identity=NAME` (admin: all; an owner: its identities'). Never returns secrets.
pub async fn list(
    State(st): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<TokenFilter>,
) -> ApiResult<Json<Value>> {
    st.db(move |conn, _| {
        let entry = NewEntry::new(&who, "token.list");
        let lead = orgs::delegation(conn, who.id)?.is_some();
        guard(conn, &entry, may_manage_tokens(&who, lead, "list tokens"))?;
        if policy::is_admin(&who) {
            return Ok(Json(json!({"tokens": tokens::list(conn, q.identity.as_deref())?})));
        }
        // an owner: the tokens of the identities it manages; a lead: those of its owner's others
        let org = if lead { who.manager_id.unwrap_or(who.id) } else { who.id };
        let managed = identities::list_for_owner(conn, org)?
            .into_iter()
            .filter(|i| i.manager_id == Some(org) && i.id != who.id)
            .map(|i| i.name)
            .collect::<Vec<_>>();
        let wanted = match q.identity.as_deref() {
            Some(n) => Some(token_target(conn, &who, lead, n).map(|i| i.name)?),
            None => None,
        };
        let list = tokens::list(conn, wanted.as_deref())?
            .into_iter()
            .filter(|t| managed.contains(&t.identity))
            .collect::<Vec<_>>();
        Ok(Json(json!({"tokens": list})))
    })
    .await
}

/// `DELETE /v1/tokens/{token_id}` (admin, or the owner that manages its identity). Effective immediately.
pub async fn revoke(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(token_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let token_id = path_id("token_id", &token_id)?;
    st.db(move |conn, _| {
        let mut entry = NewEntry::new(&who, "token.revoke").params(json!({"token_id": token_id}));
        if let Some(o) = org_reader(&who) {
            entry.add_reader(o);
        }
        let lead = orgs::delegation(conn, who.id)?.is_some();
        guard(conn, &entry, may_manage_tokens(&who, lead, "revoke tokens"))?;
        let unknown = || ApiError::not_found(format!("token {token_id} does not exist on this keyhost"));
        let holder = match tokens::find(conn, token_id)? {
            Some(info) => identities::find_by_name(conn, &info.identity)?,
            None => None,
        };
        let by_lead = |h: &identities::Identity| {
            lead && h.manager_id.is_some() && h.manager_id == who.manager_id && h.id != who.id
        };
        let check = match &holder {
            Some(h) if identities::manages(&who, h) || by_lead(h) => Ok(()),
            None if policy::is_admin(&who) => Err(unknown()),
            // an owner: one refusal for other organisations' tokens and unknown ids alike (token
            // ids are sequential)
            _ => Err(ApiError::denied(format!(
                "token {token_id} is not a token of an identity you manage (an unknown id is refused the same way)"
            ))),
        };
        super::guard_found(conn, &entry, check)?;
        let tx = conn.transaction()?;
        let Some(info) = tokens::find(&tx, token_id)? else {
            return Err(unknown());
        };
        tokens::revoke(&tx, token_id)?;
        entry.params = json!({"token_id": token_id, "identity": info.identity});
        audit::append(&tx, entry)?;
        tx.commit()?;
        Ok(Json(json!({"revoked": true})))
    })
    .await
}

#[derive(Deserialize, Default)]
pub struct RotateToken {
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

/// `POST /v1/tokens/rotate` (the token's holder): a new token for the same identity; the
/// token that made the request is revoked in the same transaction. The new secret is in this
/// response only. Rotation never extends a token's life: the new token expires when the old
/// one would have (or after `ttl_seconds`, if that is sooner); a token without expiry (the
/// bootstrap admin's) stays without one unless `ttl_seconds` is given.
pub async fn rotate(
    State(st): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: RotateToken = if body.iter().all(u8::is_ascii_whitespace) {
        RotateToken::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("malformed request body: {e}")))?
    };
    if let Some(t) = req.ttl_seconds {
        if !(1..=MAX_TTL_SECONDS).contains(&t) {
            return Err(ApiError::invalid(format!(
                "ttl_seconds must be between 1 and {MAX_TTL_SECONDS}"
            )));
        }
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.split_once(' '))
        .map(|(_, t)| Zeroizing::new(t.trim().to_owned()))
        .ok_or_else(|| ApiError::invalid("no bearer token to rotate"))?;
    st.db(move |conn, _| {
        let tx = conn.transaction()?;
        let (old_id, old_expiry) = tokens::active_id(&tx, &presented)?
            .ok_or_else(|| ApiError::conflict("the token was revoked while it was being rotated"))?;
        let asked = req
            .ttl_seconds
            .map(|t| clock::now_micros().saturating_add(t.saturating_mul(1_000_000)));
        let expires_at = match (asked, old_expiry) {
            (Some(a), Some(o)) => Some(a.min(o)),
            (a, o) => a.or(o),
        };
        tokens::revoke(&tx, old_id)?;
        let (info, secret) = tokens::issue_until(&tx, &who, expires_at)?;
        audit::append(
            &tx,
            NewEntry::new(&who, "token.rotate").params(json!({
                "old_token_id": old_id, "token_id": info.token_id, "ttl_seconds": req.ttl_seconds,
                "expires_at": expires_at.map(clock::format_rfc3339),
            })),
        )?;
        tx.commit()?;
        let mut body = issued_json(&info, &secret);
        body["revoked_token_id"] = json!(old_id);
        Ok(Json(body))
    })
    .await
}

/// Admins manage every token; owners the tokens of the identities they created; a lead (an
/// analyst its owner delegated to, `POST /v1/identities/delegate`) those of its owner's others.
fn may_manage_tokens(who: &identities::Identity, lead: bool, action: &str) -> ApiResult<()> {
    if lead || matches!(who.role, identities::Role::Admin | identities::Role::Owner) {
        return Ok(());
    }
    policy::require_admin(who, &format!("{action} (owners manage their own identities' tokens)"))
}

/// The owner whose log a token action is filed under: the caller if an owner, its manager if a lead.
fn org_reader(who: &identities::Identity) -> Option<i64> {
    match who.role {
        identities::Role::Owner => Some(who.id),
        identities::Role::Member => who.manager_id,
        identities::Role::Admin => None,
    }
}

/// The identity whose tokens `who` asks to manage: for a lead, another identity of its owner
/// (by short or full name; never itself), refused alike whether it exists or not.
fn token_target(
    conn: &Connection,
    who: &identities::Identity,
    lead: bool,
    name: &str,
) -> ApiResult<identities::Identity> {
    let Some(org) = who.manager_id.filter(|_| lead) else {
        return manageable(conn, who, name);
    };
    let owner = identities::find_by_id(conn, org)?;
    let mut candidates = vec![name.to_owned()];
    if let Some(o) = &owner {
        candidates.insert(0, orgs::qualified(o, name));
    }
    for c in candidates {
        if let Some(i) = identities::find_by_name(conn, &c)? {
            if i.manager_id == Some(org) && i.id != who.id {
                return Ok(i);
            }
        }
    }
    Err(ApiError::denied(format!(
        "identity '{name}' is not one identity '{}' may issue tokens for as its owner's lead (an identity that \
         does not exist is refused the same way)",
        who.name
    )))
}

/// The response of a newly issued token: its secret, shown once.
fn issued_json(info: &tokens::TokenInfo, secret: &str) -> Value {
    json!({
        "token_id": info.token_id,
        "token": secret,
        "identity": info.identity,
        "expires_at": info.expires_at.map(clock::format_rfc3339),
    })
}
