//! Who may do what: role checks for management, and the grant decision for answer keys.
//!
//! Admins may do everything. The owner of a dataset (its creator) manages it and is allowed
//! every answer key on it. Members get only what active grants allow: deny by default.

use crate::store::Connection;

use crate::domain::datasets::Dataset;
use crate::domain::grants::{self, Grant, GrantParams, Operation};
use crate::domain::identities::{Identity, Role};
use crate::error::{ApiError, ApiResult, MissingGrant};

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

/// Owners and admins manage datasets; a member is refused before any dataset is looked up, so
/// the refusal says nothing about which names exist.
pub fn require_owner_role(who: &Identity, action: &str) -> ApiResult<()> {
    if matches!(who.role, Role::Admin | Role::Owner) {
        return Ok(());
    }
    Err(ApiError::denied(format!(
        "identity '{}' (role {}) may not {action}: only the dataset's owner or an admin may",
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
#[derive(Debug, Clone, PartialEq)]
pub enum Authority {
    Admin,
    Owner,
    /// Active grants of the operation on the column (at least one). Where several apply the
    /// least restrictive wins.
    Grant {
        grants: Vec<Grant>,
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

    fn grants(&self) -> &[Grant] {
        match self {
            Authority::Grant { grants } => grants,
            _ => &[],
        }
    }

    pub fn grant_ids(&self) -> Vec<i64> {
        self.grants().iter().map(|g| g.grant_id).collect()
    }

    /// aggregate: the DP grant that applies, or `None` if an exact answer is allowed
    /// (owner, admin, or any grant without `epsilon`). Among DP grants the one with the
    /// largest ε (the least noise) applies.
    pub fn dp_grant(&self) -> Option<&GrantParams> {
        let gs = self.grants();
        if gs.is_empty() || gs.iter().any(|g| g.params.epsilon.is_none()) {
            return None;
        }
        gs.iter()
            .map(|g| &g.params)
            .max_by(|a, b| a.epsilon.unwrap_or(0.0).total_cmp(&b.epsilon.unwrap_or(0.0)))
    }

    /// aggregate: the smallest row count allowed, over the grants that apply (none for
    /// owner/admin or when some applicable grant has no `min_rows`).
    pub fn min_rows(&self) -> Option<u64> {
        let dp = self.dp_grant().is_some();
        self.grants()
            .iter()
            .filter(|g| dp || g.params.epsilon.is_none())
            .map(|g| g.params.min_rows)
            .reduce(|a, b| match (a, b) {
                (Some(x), Some(y)) => Some(x.min(y)),
                _ => None,
            })
            .flatten()
    }

    /// compare: whether a token for stored constant `c` is allowed and, if so, the limit on
    /// distinct constants (`Some(None)`: no limit). `None`: no grant allows `c`.
    pub fn constant_limit(&self, c: i64) -> Option<Option<u64>> {
        match self {
            Authority::Admin | Authority::Owner => Some(None),
            Authority::Grant { grants } => grants
                .iter()
                .filter(|g| g.params.allows_constant(c))
                .map(|g| g.params.max_constants)
                .reduce(|a, b| match (a, b) {
                    (Some(x), Some(y)) => Some(x.max(y)),
                    _ => None,
                }),
        }
    }

    /// score: the most independent weight vectors the grants allow (the largest among them;
    /// `None`: no limit beyond the span rule, also for owner/admin).
    pub fn max_vectors(&self) -> Option<u64> {
        self.grants()
            .iter()
            .map(|g| g.params.max_vectors)
            .reduce(|a, b| a.zip(b).map(|(x, y)| x.max(y)))
            .flatten()
    }

    /// compute: the most evaluations per row and column the grants allow (the largest among
    /// them; `None`: no limit, owner and admin).
    pub fn max_evaluations(&self) -> Option<u64> {
        self.grants()
            .iter()
            .map(|g| g.params.max_evaluations)
            .reduce(|a, b| a.zip(b).map(|(x, y)| x.max(y)))
            .flatten()
    }

    /// compute: whether some grant allows a circuit using `ops` with an output that is an
    /// integer (`value`) or a predicate (owner and admin: always).
    pub fn allows_circuit(&self, ops: &[&str], value: bool) -> bool {
        match self {
            Authority::Admin | Authority::Owner => true,
            Authority::Grant { grants } => grants.iter().any(|g| {
                (!value || g.params.reveal_values == Some(true))
                    && g.params
                        .ops
                        .as_ref()
                        .is_none_or(|allowed| ops.iter().all(|o| allowed.iter().any(|a| a == o)))
            }),
        }
    }

    /// compare: the allowed constants of the grants, described for a refusal message.
    pub fn allowed_constants(&self) -> Vec<serde_json::Value> {
        self.grants()
            .iter()
            .map(|g| g.params.given.clone().unwrap_or(serde_json::Value::Null))
            .collect()
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
    Ok(Authority::Grant { grants: active })
}

/// `group`/`link` pads of a column in a join domain for an identity whose organisation holds
/// that domain's key (the domain's owner or a member, present or past) other than the dataset's
/// owner: such an organisation can compute the domain's tags of any value, so the pads let it
/// dictionary-attack the pseudonyms of the rows they cover. Allowed only where the dataset's
/// owner said so in the grant (`domain_key_holder`), whenever the membership began.
pub fn check_key_holder(
    conn: &Connection,
    who: &Identity,
    ds: &Dataset,
    column: &str,
    domain: Option<&crate::domain::join_domains::JoinDomain>,
    auth: &Authority,
) -> ApiResult<()> {
    let (Some(d), Authority::Grant { grants }) = (domain, auth) else {
        return Ok(());
    };
    let Some(org) = crate::domain::orgs::org_of(who) else {
        return Ok(());
    };
    if org == ds.owner_id || !crate::domain::orgs::holds_domain_key(conn, d.id, d.owner_id, org)? {
        return Ok(());
    }
    if grants.iter().any(|g| g.params.domain_key_holder == Some(true)) {
        return Ok(());
    }
    Err(ApiError::denied(format!(
        "identity '{}' belongs to an organisation that holds the key of join domain '{}', so pads of \
         column '{column}' of dataset '{}' would let it recover the values behind the pseudonyms; its owner \
         must grant them explicitly (gp.allow.group('{column}', domain_key_holder=True))",
        who.name, d.name, ds.name
    )))
}
