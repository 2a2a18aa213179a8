//! Identities and their roles.

use crate::store::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::error::{ApiError, ApiResult};

/// What an identity may do beyond its grants (see ARCHITECTURE.md, "Roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// May create datasets; full rights on the datasets it owns.
    Owner,
    /// An analyst: only what its grants allow.
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Owner => "owner",
            Role::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub id: i64,
    pub name: String,
    pub role: Role,
    #[serde(serialize_with = "crate::clock::serialize_micros")]
    pub created_at: i64,
    /// The owner that created and manages this identity (`None`: keyhost-wide, created by an admin).
    #[serde(skip)]
    pub manager_id: Option<i64>,
}

const SELECT: &str = "SELECT id, name, role, created_at, manager_id FROM identities";

fn from_row(r: &crate::store::Row) -> crate::store::Result<Identity> {
    let role: String = r.get(2)?;
    Ok(Identity {
        id: r.get(0)?,
        name: r.get(1)?,
        // The CHECK constraint keeps roles valid; an unknown one gets the least rights.
        role: Role::parse(&role).unwrap_or(Role::Member),
        created_at: r.get(3)?,
        manager_id: r.get(4)?,
    })
}

/// Names are what people type: non-empty, at most 128 characters, no control characters,
/// and not `.` or `..` (HTTP clients rewrite those path segments). Any other character,
/// `/ ? # %` and non-ASCII included, is allowed; clients percent-encode names in paths.
pub fn validate_name(kind: &str, name: &str) -> ApiResult<()> {
    if name.trim().is_empty()
        || name.chars().count() > 128
        || name.chars().any(char::is_control)
        || name == "."
        || name == ".."
    {
        return Err(ApiError::invalid(format!(
            "{kind} name must be 1 to 128 printable characters, not only spaces, and not '.' or '..'; got {name:?}"
        )));
    }
    Ok(())
}

pub fn find_by_name(conn: &Connection, name: &str) -> crate::store::Result<Option<Identity>> {
    conn.query_row(&format!("{SELECT} WHERE name = ?1"), [name], from_row)
        .optional()
}

pub fn find_by_id(conn: &Connection, id: i64) -> crate::store::Result<Option<Identity>> {
    conn.query_row(&format!("{SELECT} WHERE id = ?1"), [id], from_row)
        .optional()
}

/// The identity called `name`, or `not_found`.
pub fn require(conn: &Connection, name: &str) -> ApiResult<Identity> {
    find_by_name(conn, name)?
        .ok_or_else(|| ApiError::not_found(format!("identity '{name}' does not exist on this keyhost")))
}

pub fn insert(conn: &Connection, name: &str, role: Role) -> crate::store::Result<Identity> {
    insert_managed(conn, name, role, None)
}

/// A new identity; `manager` is the owner that manages it (`None`: keyhost-wide).
pub fn insert_managed(
    conn: &Connection,
    name: &str,
    role: Role,
    manager: Option<i64>,
) -> crate::store::Result<Identity> {
    let now = clock::now_micros();
    let new_id: i64 = conn.query_row(
        "INSERT INTO identities (name, role, created_at, manager_id) VALUES (?1, ?2, ?3, ?4) RETURNING id",
        params![name, role.as_str(), now, manager],
        crate::store::get0,
    )?;
    Ok(Identity {
        id: new_id,
        name: name.to_owned(),
        role,
        created_at: now,
        manager_id: manager,
    })
}

pub fn list(conn: &Connection) -> crate::store::Result<Vec<Identity>> {
    let mut st = conn.prepare(&format!("{SELECT} ORDER BY id"))?;
    let rows = st.query_map((), from_row)?;
    rows.collect()
}

/// The identities an owner manages, and those other owners shared with it, in id order.
pub fn list_for_owner(conn: &Connection, owner_id: i64) -> crate::store::Result<Vec<Identity>> {
    let mut st = conn.prepare(&format!(
        "{SELECT} WHERE manager_id = ?1 OR id IN (SELECT identity_id FROM identity_shares WHERE owner_id = ?1)
         ORDER BY id"
    ))?;
    let rows = st.query_map([owner_id], from_row)?;
    rows.collect()
}

/// Whether `who` manages `target`: an admin manages every identity, an owner those it created.
pub fn manages(who: &Identity, target: &Identity) -> bool {
    who.role == Role::Admin || (who.role == Role::Owner && target.manager_id == Some(who.id))
}
