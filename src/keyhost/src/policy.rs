//! Who may do what: role checks for management, and the grant decision for answer keys.
//!
//! Admins may do everything. The owner of a dataset (its creator) manages it and is allowed
//! every answer key on it. Members get only what active grants allow: deny by default.

use rusqlite::Connection;

use crate::datasets::Dataset;
use crate::error::{ApiError, ApiResult, MissingGrant};
use crate::grants::{self, Operation};
use crate::identities::{Identity, Role};

pub fn is_admin(who: &Identity) -> bool {
    who.role == Role::Admin
}

/// Admin or the dataset's owner.
pub fn can_manage(who: &Identity, ds: &Dataset) -> bool {
    is_admin(who) || ds.owner_id == who.id
}

pub fn require_admin(who: &Identity, action: &str) -> ApiResult<()> {
    if is_admin(who) {
        return Ok(());
    }
    Err(ApiError::denied(format!(
        "identity '{}' (role {}) may not {action}: only an admin may",
        who.name,
        who.role.as_str()
    )))
}

pub fn require_create_dataset(who: &Identity) -> ApiResult<()> {
    if matches!(who.role, Role::Admin | Role::Owner) {
        return Ok(());
    }
    Err(ApiError::denied(format!(
        "identity '{}' (role {}) may not create datasets: only owners and admins may",
        who.name,
        who.role.as_str()
    )))
}

pub fn require_manage(who: &Identity, ds: &Dataset, action: &str) -> ApiResult<()> {
    if can_manage(who, ds) {
        return Ok(());
    }
    Err(ApiError::denied(format!(
        "identity '{}' may not {action} of dataset '{}': only its owner '{}' or an admin may",
        who.name, ds.name, ds.owner
    )))
}

/// Why an answer key may be issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    Admin,
    Owner,
    /// Active grants (ids) with the weakest `min_rows` constraint among them.
    Grant {
        grant_ids: Vec<i64>,
        min_rows: Option<u64>,
    },
}

impl Authority {
    pub fn reason(&self) -> &'static str {
        match self {
            Authority::Admin => "admin",
            Authority::Owner => "owner",
            Authority::Grant { .. } => "grant",
        }
    }

    pub fn min_rows(&self) -> Option<u64> {
        match self {
            Authority::Grant { min_rows, .. } => *min_rows,
            _ => None,
        }
    }

    pub fn grant_ids(&self) -> &[i64] {
        match self {
            Authority::Grant { grant_ids, .. } => grant_ids,
            _ => &[],
        }
    }
}

/// May `who` obtain `op` answer keys on `column` of `ds`? Names the missing grant if not.
pub fn authorize(conn: &Connection, who: &Identity, ds: &Dataset, column: &str, op: Operation) -> ApiResult<Authority> {
    if is_admin(who) {
        return Ok(Authority::Admin);
    }
    if ds.owner_id == who.id {
        return Ok(Authority::Owner);
    }
    let active = grants::active_for(conn, who.id, ds.id, column, op)?;
    if active.is_empty() {
        return Err(ApiError::missing_grant(
            &who.name,
            MissingGrant {
                operation: op.as_str().into(),
                dataset: ds.name.clone(),
                column: Some(column.into()),
            },
        ));
    }
    // Several grants: the least restrictive applies (no min_rows beats any min_rows).
    let min_rows = active
        .iter()
        .map(|g| g.params.min_rows)
        .reduce(|a, b| match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            _ => None,
        })
        .flatten();
    Ok(Authority::Grant {
        grant_ids: active.iter().map(|g| g.grant_id).collect(),
        min_rows,
    })
}
