use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::guard;
use crate::domain::audit::{self, NewEntry};
use crate::domain::identities::{self, Identity, Role};
use crate::domain::{orgs, policy};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, Caller};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct CreateIdentity {
    name: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    exist_ok: bool,
}

/// An identity as listed: its manager (the owner that created it, if any) and the owners it is
/// shared with.
#[derive(Serialize)]
struct Listed {
    id: i64,
    name: String,
    role: Role,
    created_at: String,
    manager: Option<String>,
    shared_with: Vec<String>,
}

fn listed(conn: &crate::store::Connection, i: &Identity) -> ApiResult<Listed> {
    let manager = match i.manager_id {
        Some(m) => identities::find_by_id(conn, m)?.map(|m| m.name),
        None => None,
    };
    Ok(Listed {
        id: i.id,
        name: i.name.clone(),
        role: i.role,
        created_at: crate::clock::format_rfc3339(i.created_at),
        manager,
        shared_with: orgs::shared_with(conn, i.id)?,
    })
}

/// `POST /v1/identities`: an admin creates any identity (keyhost-wide); an owner creates
/// members in its own namespace: `{"name": "worker"}` by `clinic` is `clinic/worker`, managed by
/// `clinic` (which grants to it and issues, lists and revokes its tokens).
pub async fn create(
    State(st): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<CreateIdentity>,
) -> ApiResult<Json<Value>> {
    st.db(move |conn, _| {
        let role_s = req.role.as_deref().unwrap_or("member");
        let mut entry = NewEntry::new(&who, "identity.create").params(json!({"name": req.name, "role": role_s}));
        let by_owner = who.role == Role::Owner;
        if by_owner {
            entry.add_reader(who.id);
        }
        let check = match (who.role, role_s) {
            (Role::Admin, _) => Ok(()),
            (Role::Owner, "member") => Ok(()),
            (Role::Owner, _) => Err(ApiError::denied(format!(
                "identity '{}' (role owner) may create only 'member' identities (its analysts), not '{role_s}': \
                 owners and admins are created by an admin",
                who.name
            ))),
            _ => policy::require_admin(&who, "create identities (owners create their own analysts)"),
        };
        guard(conn, &entry, check)?;
        identities::validate_name("identity", &req.name)?;
        let role = Role::parse(role_s)
            .ok_or_else(|| ApiError::invalid(format!("role must be 'member', 'owner' or 'admin', not '{role_s}'")))?;
        if by_owner && req.name.contains('/') && !req.name.starts_with(&format!("{}/", who.name)) {
            // a name in another namespace: usable only once shared (resolve says so), never a
            // new `owner/other/name`
            let found = orgs::resolve(conn, &who, &req.name);
            let existing = super::guard_found(conn, &entry, found)?;
            if !req.exist_ok {
                return Err(ApiError::conflict(format!(
                    "identity '{}' already exists",
                    existing.name
                )));
            }
            return Ok(Json(created_json(conn, &existing)?));
        }
        let (name, manager) = if by_owner {
            let q = orgs::qualified(&who, &req.name);
            identities::validate_name("identity", &q)?;
            (q, Some(who.id))
        } else {
            (req.name.clone(), None)
        };
        if by_owner && req.exist_ok {
            // an identity the owner may already address by this name (its own, one shared with
            // it, or a keyhost-wide one): use it
            // (a name it may not address is simply created below; a failure of the store is not)
            match orgs::resolve(conn, &who, &req.name) {
                Ok(existing) => return Ok(Json(created_json(conn, &existing)?)),
                Err(e) if e.cause.is_some() => return Err(e),
                Err(_) => {}
            }
        }
        let tx = conn.transaction()?;
        let ident = match identities::find_by_name(&tx, &name)? {
            Some(existing) if by_owner && existing.manager_id != Some(who.id) => {
                // `owner/name` taken by an identity the owner does not manage (an admin created it)
                return Err(ApiError::conflict(format!(
                    "the name '{name}' is taken by an identity you do not manage; choose another name"
                )));
            }
            Some(existing) if req.exist_ok => existing,
            Some(_) => return Err(ApiError::conflict(format!("identity '{name}' already exists"))),
            None => {
                let ident = identities::insert_managed(&tx, &name, role, manager)?;
                let mut entry = entry;
                entry.params = json!({"name": name, "role": role_s, "manager": manager.map(|_| who.name.clone())});
                audit::append(&tx, entry)?;
                ident
            }
        };
        tx.commit()?;
        Ok(Json(created_json(conn, &ident)?))
    })
    .await
}

fn created_json(conn: &crate::store::Connection, i: &Identity) -> ApiResult<Value> {
    let l = listed(conn, i)?;
    Ok(json!({"id": l.id, "name": l.name, "role": l.role, "manager": l.manager}))
}

/// `GET /v1/identities`: an admin lists all; an owner those it manages and those shared with it.
pub async fn list(State(st): State<AppState>, Caller(who): Caller) -> ApiResult<Json<Value>> {
    st.db(move |conn, _| {
        let mut entry = NewEntry::new(&who, "identity.list");
        let all = match who.role {
            Role::Admin => identities::list(conn)?,
            Role::Owner => identities::list_for_owner(conn, who.id)?,
            Role::Member => {
                entry.add_reader(who.manager_id.unwrap_or(who.id));
                let refused = policy::require_admin(&who, "list identities (owners list the ones they manage)");
                guard(conn, &entry, refused)?;
                Vec::new()
            }
        };
        let out = all.iter().map(|i| listed(conn, i)).collect::<ApiResult<Vec<_>>>()?;
        Ok(Json(json!({"identities": out})))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    identity: String,
    /// The owner that may then grant to the identity (by its full name).
    with: String,
    /// `false` takes a share back (grants already made stay until revoked).
    #[serde(default = "yes")]
    shared: bool,
}

fn yes() -> bool {
    true
}

/// `POST /v1/identities/share {"identity", "with", "shared"?}` (the identity's manager or an
/// admin): let another owner grant on its datasets to an identity this owner manages. The
/// explicit act by which a worker serves two organisations; recorded in both owners' logs.
pub async fn share(
    State(st): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<Share>,
) -> ApiResult<Json<Value>> {
    st.db(move |conn, _| {
        let mut entry = NewEntry::new(&who, "identity.share")
            .params(json!({"identity": req.identity, "with": req.with, "shared": req.shared}));
        entry.add_reader(who.id);
        let found = manageable(conn, &who, &req.identity);
        let target = super::guard_found(conn, &entry, found)?;
        let found = identities::find_by_name(conn, &req.with)?
            .filter(|o| o.role == Role::Owner && o.id != who.id)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "'{}' is not another owner on this keyhost; identities are shared with owners",
                    req.with
                ))
            });
        let with = super::guard_found(conn, &entry, found)?;
        entry.add_reader(with.id);
        if let Some(m) = target.manager_id {
            entry.add_reader(m);
        }
        let tx = conn.transaction()?;
        let changed = orgs::set_shared(&tx, target.id, with.id, req.shared)?;
        entry.params = json!({"identity": target.name, "with": with.name, "shared": req.shared, "changed": changed});
        audit::append(&tx, entry)?;
        tx.commit()?;
        Ok(Json(
            json!({"identity": target.name, "with": with.name, "shared": req.shared}),
        ))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delegate {
    identity: String,
    /// The longest life of a token the lead issues (seconds).
    #[serde(default)]
    max_ttl_seconds: Option<i64>,
    /// How long the delegation lasts (seconds).
    #[serde(default)]
    ttl_seconds: Option<i64>,
    /// `true` ends the delegation now.
    #[serde(default)]
    revoke: bool,
}

/// Longest delegation: 90 days.
const MAX_DELEGATION_SECONDS: i64 = 90 * 24 * 3600;

/// `POST /v1/identities/delegate {"identity", "max_ttl_seconds", "ttl_seconds"}` (the owner that
/// manages the identity): make one of its analysts the lead of its identities for a time. The
/// lead issues, lists and revokes the tokens of the owner's other identities, each token living
/// at most `max_ttl_seconds` and never beyond the delegation's end; it cannot create identities,
/// grant, or issue tokens for itself. `{"identity", "revoke": true}` ends it at once (tokens
/// already issued stay until they expire or are revoked). Audited in the owner's log.
pub async fn delegate(
    State(st): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<Delegate>,
) -> ApiResult<Json<Value>> {
    st.db(move |conn, _| {
        let mut entry = NewEntry::new(&who, "identity.delegate").params(json!({
            "identity": req.identity, "max_ttl_seconds": req.max_ttl_seconds,
            "ttl_seconds": req.ttl_seconds, "revoke": req.revoke,
        }));
        entry.add_reader(who.id);
        let owner_only = if who.role == Role::Owner {
            Ok(())
        } else {
            Err(ApiError::denied(format!(
                "identity '{}' (role {}) may not delegate: an owner delegates the tokens of its own analysts",
                who.name,
                who.role.as_str()
            )))
        };
        guard(conn, &entry, owner_only)?;
        let found = manageable(conn, &who, &req.identity);
        let lead = super::guard_found(conn, &entry, found)?;
        let d = if req.revoke {
            None
        } else {
            let (Some(max_ttl), Some(ttl)) = (req.max_ttl_seconds, req.ttl_seconds) else {
                return Err(ApiError::invalid(
                    "a delegation needs max_ttl_seconds (longest token life) and ttl_seconds (how long it lasts)",
                ));
            };
            if !(1..=MAX_DELEGATION_SECONDS).contains(&ttl) || !(1..=ttl).contains(&max_ttl) {
                return Err(ApiError::invalid(format!(
                    "ttl_seconds must be between 1 and {MAX_DELEGATION_SECONDS}, and max_ttl_seconds between 1 and \
                     ttl_seconds"
                )));
            }
            Some(orgs::Delegation {
                max_ttl_seconds: max_ttl,
                expires_at: crate::clock::now_micros().saturating_add(ttl.saturating_mul(1_000_000)),
            })
        };
        let tx = conn.transaction()?;
        orgs::set_delegation(&tx, lead.id, d)?;
        entry.params = json!({
            "identity": lead.name, "max_ttl_seconds": d.map(|d| d.max_ttl_seconds),
            "expires_at": d.map(|d| crate::clock::format_rfc3339(d.expires_at)), "revoke": req.revoke,
        });
        audit::append(&tx, entry)?;
        tx.commit()?;
        Ok(Json(json!({
            "identity": lead.name,
            "max_ttl_seconds": d.map(|d| d.max_ttl_seconds),
            "expires_at": d.map(|d| crate::clock::format_rfc3339(d.expires_at)),
        })))
    })
    .await
}

/// The identity `name` if `who` manages it (an admin: any, else `not_found`; an owner: the ones it
/// created, by short or full name). An owner gets one `permission_denied` for identities of others
/// and names that do not exist alike, so owners cannot probe names.
pub fn manageable(conn: &crate::store::Connection, who: &Identity, name: &str) -> ApiResult<Identity> {
    if who.role == Role::Admin {
        return identities::require(conn, name);
    }
    let found = match orgs::resolve(conn, who, name) {
        Ok(i) => Some(i),
        // an internal error (the store failed) leaves as one, with its cause logged
        Err(e) if e.cause.is_some() => return Err(e),
        Err(_) => None,
    };
    match found {
        Some(i) if identities::manages(who, &i) => Ok(i),
        // the same refusal whether the identity exists or not: no probing other organisations
        _ => Err(ApiError::denied(format!(
            "identity '{name}' is not one you manage: owners manage the identities they created, named \
             '{}/NAME' (an identity that does not exist is refused the same way)",
            who.name
        ))),
    }
}
