//! Organisations on one keyhost: each owner identity is an organisation. It names its datasets
//! and join domains in its own namespace, manages the identities it creates (`owner/name`),
//! shares one of them with another owner only by an explicit act, and lets other owners'
//! columns into its join domains only by granting them membership.
//!
//! Tables: `identity_shares` (an identity an owner manages, made grantable by another owner),
//! `token_delegations` (an analyst an owner made the lead of its identities' tokens, for a time),
//! `join_domain_members` (owners whose columns may register in a domain, by the domain owner's
//! consent) and `audit_readers` (which owners may read an audit entry besides admins: the owner
//! of the dataset it is about, both owners of a membership change, the manager of an identity;
//! an index beside the hash-chained log, see `docs/keyhost.md#organisations`).

use crate::store::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::clock;
use crate::domain::identities::{self, Identity, Role};
use crate::error::{ApiError, ApiResult};

/// The organisation an identity acts for: an owner (or admin) is its own organisation; an
/// identity an owner created belongs to that owner; a keyhost-wide member (created by an
/// admin) belongs to none.
pub fn org_of(who: &Identity) -> Option<i64> {
    match (who.role, who.manager_id) {
        (_, Some(m)) => Some(m),
        (Role::Owner | Role::Admin, None) => Some(who.id),
        (Role::Member, None) => None,
    }
}

/// The name an owner's new identity `name` gets: `owner/name` (unchanged if already so prefixed).
pub fn qualified(owner: &Identity, name: &str) -> String {
    let prefix = format!("{}/", owner.name);
    if name.starts_with(&prefix) && name.len() > prefix.len() {
        name.to_owned()
    } else {
        format!("{prefix}{name}")
    }
}

/// The identity `name` as `who` addresses it when granting or issuing tokens. An admin names
/// any identity. An owner names its own identities by their short name (`worker` for
/// `clinic/worker`) or full name, identities another owner shared with it by their full name,
/// and keyhost-wide identities (created by an admin) by their name. Anything else is refused
/// exactly as an unknown name is, so owners cannot probe other organisations' identities.
pub fn resolve(conn: &Connection, who: &Identity, name: &str) -> ApiResult<Identity> {
    if who.role == Role::Admin {
        return identities::require(conn, name);
    }
    if who.role == Role::Owner {
        if let Some(own) = identities::find_by_name(conn, &qualified(who, name))? {
            if own.manager_id == Some(who.id) {
                return Ok(own);
            }
        }
        if let Some(i) = identities::find_by_name(conn, name)? {
            let visible = i.id == who.id
                || i.manager_id == Some(who.id)
                || (i.manager_id.is_none() && i.role != Role::Admin)
                || is_shared(conn, i.id, who.id)?;
            if visible {
                return Ok(i);
            }
        }
    }
    Err(ApiError::not_found(format!(
        "identity '{name}' does not exist on this keyhost or is not one you manage; an owner creates \
         its own with session.create_identity('{name}') (named '{}/{name}'), another owner's identity \
         is usable only after its manager shares it with you",
        who.name
    )))
}

/// Whether `identity_id` was shared with the owner `owner_id` by its manager.
pub fn is_shared(conn: &Connection, identity_id: i64, owner_id: i64) -> crate::store::Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM identity_shares WHERE identity_id = ?1 AND owner_id = ?2",
            params![identity_id, owner_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Share (`true`) or unshare an identity with an owner. Returns whether anything changed.
pub fn set_shared(conn: &Connection, identity_id: i64, owner_id: i64, shared: bool) -> crate::store::Result<bool> {
    let n = if shared {
        conn.execute(
            "INSERT INTO identity_shares (identity_id, owner_id, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (identity_id, owner_id) DO NOTHING",
            params![identity_id, owner_id, clock::now_micros()],
        )?
    } else {
        conn.execute(
            "DELETE FROM identity_shares WHERE identity_id = ?1 AND owner_id = ?2",
            params![identity_id, owner_id],
        )?
    };
    Ok(n > 0)
}

/// Names of the owners an identity is shared with.
pub fn shared_with(conn: &Connection, identity_id: i64) -> crate::store::Result<Vec<String>> {
    let mut st = conn.prepare(
        "SELECT i.name FROM identity_shares s JOIN identities i ON i.id = s.owner_id
         WHERE s.identity_id = ?1 ORDER BY i.name",
    )?;
    let rows = st.query_map([identity_id], crate::store::get0)?;
    rows.collect()
}

/// Whether the owner `owner_id` is a consented member of the join domain.
pub fn is_member(conn: &Connection, domain_id: i64, owner_id: i64) -> crate::store::Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM join_domain_members WHERE domain_id = ?1 AND owner_id = ?2 AND removed_at IS NULL",
            params![domain_id, owner_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Whether the organisation `org` holds (or held) the key of the join domain: its owner, or an
/// owner that is or was a member (a removed member keeps the keys it was given).
pub fn holds_domain_key(conn: &Connection, domain_id: i64, domain_owner: i64, org: i64) -> crate::store::Result<bool> {
    if org == domain_owner {
        return Ok(true);
    }
    Ok(conn
        .query_row(
            "SELECT 1 FROM join_domain_members WHERE domain_id = ?1 AND owner_id = ?2",
            params![domain_id, org],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Add (`true`) or remove a member of a join domain. Returns whether anything changed.
pub fn set_member(conn: &Connection, domain_id: i64, owner_id: i64, member: bool) -> crate::store::Result<bool> {
    let n = if member {
        if is_member(conn, domain_id, owner_id)? {
            return Ok(false);
        }
        conn.execute(
            "INSERT INTO join_domain_members (domain_id, owner_id, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (domain_id, owner_id) DO UPDATE SET created_at = excluded.created_at, removed_at = NULL",
            params![domain_id, owner_id, clock::now_micros()],
        )?
    } else {
        conn.execute(
            "UPDATE join_domain_members SET removed_at = ?3 WHERE domain_id = ?1 AND owner_id = ?2 AND removed_at IS NULL",
            params![domain_id, owner_id, clock::now_micros()],
        )?
    };
    Ok(n > 0)
}

/// A member of a join domain, as listed to the domain's owner.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub owner: String,
    #[serde(serialize_with = "crate::clock::serialize_micros")]
    pub since: i64,
}

pub fn members(conn: &Connection, domain_id: i64) -> crate::store::Result<Vec<Member>> {
    let mut st = conn.prepare(
        "SELECT i.name, m.created_at FROM join_domain_members m JOIN identities i ON i.id = m.owner_id
         WHERE m.domain_id = ?1 AND m.removed_at IS NULL ORDER BY i.name",
    )?;
    let rows = st.query_map([domain_id], |r| {
        Ok(Member {
            owner: r.get(0)?,
            since: r.get(1)?,
        })
    })?;
    rows.collect()
}

/// A delegation of token management to an analyst: the most seconds a token it issues may live,
/// and when the delegation ends (microseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delegation {
    pub max_ttl_seconds: i64,
    pub expires_at: i64,
}

/// The analyst's delegation, if it has one that has not ended.
pub fn delegation(conn: &Connection, identity_id: i64) -> crate::store::Result<Option<Delegation>> {
    let d = conn
        .query_row(
            "SELECT max_ttl_seconds, expires_at FROM token_delegations WHERE identity_id = ?1",
            [identity_id],
            |r| {
                Ok(Delegation {
                    max_ttl_seconds: r.get(0)?,
                    expires_at: r.get(1)?,
                })
            },
        )
        .optional()?;
    Ok(d.filter(|d| d.expires_at > clock::now_micros()))
}

/// Set (`Some`) or end (`None`) an analyst's delegation.
pub fn set_delegation(conn: &Connection, identity_id: i64, d: Option<Delegation>) -> crate::store::Result<()> {
    match d {
        Some(d) => conn.execute(
            "INSERT INTO token_delegations (identity_id, max_ttl_seconds, expires_at, created_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (identity_id) DO UPDATE SET max_ttl_seconds = excluded.max_ttl_seconds,
             expires_at = excluded.expires_at, created_at = excluded.created_at",
            params![identity_id, d.max_ttl_seconds, d.expires_at, clock::now_micros()],
        )?,
        None => conn.execute("DELETE FROM token_delegations WHERE identity_id = ?1", [identity_id])?,
    };
    Ok(())
}

/// Record that the owners `readers` may read audit entry `idx` (inside the entry's transaction).
pub fn add_readers(conn: &Connection, idx: i64, readers: &[i64]) -> crate::store::Result<()> {
    for r in readers {
        conn.prepare_cached(
            "INSERT INTO audit_readers (idx, owner_id) VALUES (?1, ?2) ON CONFLICT (owner_id, idx) DO NOTHING",
        )?
        .execute(params![idx, r])?;
    }
    Ok(())
}
