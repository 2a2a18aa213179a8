//! Join domains: `POST /v1/join-domains` (owner or admin) creates one in the caller's namespace
//! (names are unique per owner), `GET /v1/join-domains` lists the caller's own domains (with
//! their members) and those it is a member of. A domain's owner consents to another owner's
//! columns joining by adding it as a member (`POST /v1/join-domains/{name}/members`); a member
//! leaves, or the owner removes it, with `DELETE /v1/join-domains/{name}/members/{member}`;
//! `POST /v1/join-domains/{name}/rotate` gives the domain a new key. Every membership change is
//! audited and filed under both owners.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::guard;
use crate::domain::audit::{self, NewEntry};
use crate::domain::identities::{Identity, Role};
use crate::domain::join_domains::JoinDomain;
use crate::domain::{identities, join_domains, orgs, policy};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery, Caller};
use crate::state::AppState;
use crate::store::Connection;

#[derive(Deserialize)]
pub struct CreateJoinDomain {
    name: String,
    #[serde(default)]
    exist_ok: bool,
}

/// What `POST /v1/join-domains` answers.
#[derive(Debug, Serialize)]
pub struct JoinDomainCreated {
    pub id: i64,
    pub name: String,
    pub owner: String,
}

/// What `POST /v1/join-domains/{name}/members` answers: the domain's members after the change.
#[derive(Debug, Serialize)]
pub struct MemberAdded {
    pub join_domain: String,
    pub member: String,
    pub members: Vec<orgs::Member>,
}

/// What `DELETE /v1/join-domains/{name}/members/{member}` answers.
#[derive(Debug, Serialize)]
pub struct MemberRemoved {
    pub join_domain: String,
    pub removed: String,
}

/// What `POST /v1/join-domains/{name}/rotate` answers: the new domain and the one it replaces.
#[derive(Debug, Serialize)]
pub struct JoinDomainRotated {
    pub join_domain: String,
    pub id: i64,
    pub previous_id: i64,
}

pub async fn create(
    State(st): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<CreateJoinDomain>,
) -> ApiResult<Json<JoinDomainCreated>> {
    st.db(move |conn, st| {
        let mut entry = NewEntry::new(&who, "join_domain.create");
        entry.add_reader(who.id);
        guard(conn, &entry, policy::require_create_dataset(&who))?;
        identities::validate_name("join domain", &req.name)?;
        let tx = conn.transaction()?;
        // names are unique per owner: only the caller's own domains can be in the way
        let d = match join_domains::find_owned(&tx, who.id, &req.name)? {
            Some(d) if req.exist_ok => d,
            Some(_) => {
                return Err(ApiError::conflict(format!(
                    "you already own a join domain named '{}' (pass exist_ok to use it)",
                    req.name
                )))
            }
            None => {
                let d = join_domains::insert(&tx, st.master(), &req.name, &who)?;
                audit::append(
                    &tx,
                    entry.params(json!({"join_domain": d.name, "join_domain_id": d.id})),
                )?;
                d
            }
        };
        tx.commit()?;
        Ok(Json(JoinDomainCreated {
            id: d.id,
            name: d.name,
            owner: who.name,
        }))
    })
    .await
}

/// `GET /v1/join-domains`: the caller's own domains with their members, and the domains of
/// other owners that made the caller a member.
pub async fn list(State(st): State<AppState>, Caller(who): Caller) -> ApiResult<Json<Value>> {
    st.db(move |conn, _| {
        let mut st = conn.prepare(
            "SELECT d.id, d.name, o.name FROM join_domains d JOIN identities o ON o.id = d.owner_id
             WHERE d.retired_at IS NULL AND (d.owner_id = ?1 OR ?2 = 1 OR EXISTS (
                 SELECT 1 FROM join_domain_members m WHERE m.domain_id = d.id AND m.owner_id = ?1
                 AND m.removed_at IS NULL))
             ORDER BY d.id",
        )?;
        let rows = st
            .query_map(crate::params![who.id, i64::from(policy::is_admin(&who))], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })?
            .collect::<crate::store::Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, name, owner) in rows {
            let mut v = json!({"id": id, "name": name, "owner": owner});
            if owner == who.name || policy::is_admin(&who) {
                v["members"] = json!(orgs::members(conn, id)?);
            }
            out.push(v);
        }
        Ok(Json(json!({"join_domains": out})))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// The owner whose columns may then register in the domain (and so receive its keys).
    owner: String,
}

/// The caller's own current domain `name` (an admin names the owner with `?owner=`).
fn own_domain(conn: &Connection, who: &Identity, name: &str, owner: Option<&str>) -> ApiResult<JoinDomain> {
    let owner_id = match (owner, who.role) {
        (Some(o), Role::Admin) => identities::find_by_name(conn, o)?.map(|i| i.id),
        _ => Some(who.id),
    };
    owner_id
        .map(|o| join_domains::find_owned(conn, o, name))
        .transpose()?
        .flatten()
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "you own no join domain named '{name}' (only a domain's owner manages its members)"
            ))
        })
}

/// `POST /v1/join-domains/{name}/members {"owner"}` (the domain's owner): consent to the
/// owner's columns joining the domain. They receive the domain's keys when they register.
pub async fn add_member(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(name): Path<String>,
    ApiQuery(oq): ApiQuery<DomainOwner>,
    ApiJson(req): ApiJson<AddMember>,
) -> ApiResult<Json<MemberAdded>> {
    st.db(move |conn, _| {
        let mut entry =
            NewEntry::new(&who, "join_domain.member.add").params(json!({"join_domain": name, "member": req.owner}));
        entry.add_reader(who.id);
        let found = own_domain(conn, &who, &name, oq.owner.as_deref());
        let d = super::guard_found(conn, &entry, found)?;
        entry.add_reader(d.owner_id);
        let found = identities::find_by_name(conn, &req.owner)?
            .filter(|o| o.role == Role::Owner && o.id != d.owner_id)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "'{}' is not another owner on this keyhost; members of a join domain are owners",
                    req.owner
                ))
            });
        let member = super::guard_found(conn, &entry, found)?;
        entry.add_reader(member.id);
        let tx = conn.transaction()?;
        let changed = orgs::set_member(&tx, d.id, member.id, true)?;
        entry.params =
            json!({"join_domain": d.name, "join_domain_id": d.id, "member": member.name, "changed": changed});
        audit::append(&tx, entry)?;
        tx.commit()?;
        Ok(Json(MemberAdded {
            members: orgs::members(conn, d.id)?,
            join_domain: d.name,
            member: member.name,
        }))
    })
    .await
}

#[derive(Deserialize, Default)]
pub struct DomainOwner {
    /// The domain's owner: a member leaving names it when it may use several domains of that
    /// name; an admin names the owner of the domain it manages.
    #[serde(default)]
    owner: Option<String>,
}

/// `DELETE /v1/join-domains/{name}/members/{member}`: the domain's owner removes a member, or
/// a member leaves (`?owner=` names the domain's owner). Its registered columns keep the keys
/// they were given: removing a member stops new registrations; to keep its future joins apart
/// from the domain's new ciphertext, rotate the domain's key (`/rotate`).
pub async fn remove_member(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path((name, member)): Path<(String, String)>,
    ApiQuery(oq): ApiQuery<DomainOwner>,
) -> ApiResult<Json<MemberRemoved>> {
    st.db(move |conn, _| {
        let mut entry =
            NewEntry::new(&who, "join_domain.member.remove").params(json!({"join_domain": name, "member": member}));
        entry.add_reader(who.id);
        let leaving = member == who.name;
        let d = if leaving {
            // a member leaves a domain of another owner it belongs to
            let found = join_domains::usable_by(conn, who.id, &name, oq.owner.as_deref())?
                .into_iter()
                .filter(|d| d.owner_id != who.id)
                .collect::<Vec<_>>();
            let one = match found.len() {
                1 => Ok(found.into_iter().next().expect("one domain")),
                0 => Err(ApiError::not_found(format!(
                    "your organisation is not a member of a join domain named '{name}'"
                ))),
                _ => Err(ApiError::invalid(format!(
                    "you are a member of several join domains named '{name}': pass ?owner=NAME"
                ))),
            };
            super::guard_found(conn, &entry, one)?
        } else {
            let found = own_domain(conn, &who, &name, oq.owner.as_deref());
            super::guard_found(conn, &entry, found)?
        };
        entry.add_reader(d.owner_id);
        let m = match identities::find_by_name(conn, &member)? {
            Some(m) if orgs::is_member(conn, d.id, m.id)? => Ok(m),
            _ => Err(ApiError::not_found(format!(
                "'{member}' is not a member of join domain '{name}'"
            ))),
        };
        let m = super::guard_found(conn, &entry, m)?;
        entry.add_reader(m.id);
        let tx = conn.transaction()?;
        orgs::set_member(&tx, d.id, m.id, false)?;
        entry.params = json!({"join_domain": d.name, "join_domain_id": d.id, "member": m.name, "left": leaving});
        audit::append(&tx, entry)?;
        tx.commit()?;
        Ok(Json(MemberRemoved {
            join_domain: d.name,
            removed: m.name,
        }))
    })
    .await
}

/// `POST /v1/join-domains/{name}/rotate` (the domain's owner): a new key for the domain. The
/// domain keeps its name and its current members; columns registered from now on get the new
/// key; columns registered before keep the key they have (their ciphertext stays readable and
/// joins with ciphertext under the same key). Ciphertext written under the new key does not
/// join with ciphertext under the old one, so a removed member (which holds the old key) gains
/// nothing from rows encrypted after the rotation; rows encrypted before stay as exposed as
/// they were until their owners re-encrypt them into columns registered after the rotation.
pub async fn rotate(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(name): Path<String>,
    ApiQuery(oq): ApiQuery<DomainOwner>,
) -> ApiResult<Json<JoinDomainRotated>> {
    st.db(move |conn, st| {
        let mut entry = NewEntry::new(&who, "join_domain.rotate").params(json!({"join_domain": name}));
        entry.add_reader(who.id);
        let found = own_domain(conn, &who, &name, oq.owner.as_deref());
        let old = super::guard_found(conn, &entry, found)?;
        let members = orgs::members(conn, old.id)?;
        let owner = identities::find_by_id(conn, old.owner_id)?
            .ok_or_else(|| ApiError::internal("join domain", &"domain without owner"))?;
        let tx = conn.transaction()?;
        join_domains::retire(&tx, old.id)?;
        let new = join_domains::insert(&tx, st.master(), &old.name, &owner)?;
        for m in &members {
            if let Some(i) = identities::find_by_name(&tx, &m.owner)? {
                orgs::set_member(&tx, new.id, i.id, true)?;
                entry.add_reader(i.id);
            }
        }
        entry.add_reader(old.owner_id);
        entry.params = json!({"join_domain": old.name, "previous_id": old.id, "join_domain_id": new.id});
        audit::append(&tx, entry)?;
        tx.commit()?;
        Ok(Json(JoinDomainRotated {
            join_domain: new.name,
            id: new.id,
            previous_id: old.id,
        }))
    })
    .await
}
