//! Datasets: a name, an owner (its creator) and a row-id counter.

use crate::store::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::clock;
use crate::domain::identities::Identity;
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Serialize)]
pub struct Dataset {
    pub id: i64,
    pub name: String,
    /// Name of the owning identity.
    pub owner: String,
    #[serde(skip)]
    pub owner_id: i64,
}

const SELECT: &str = "SELECT d.id, d.name, i.name, d.owner_id FROM datasets d
                      JOIN identities i ON i.id = d.owner_id";

fn from_row(r: &crate::store::Row) -> crate::store::Result<Dataset> {
    Ok(Dataset {
        id: r.get(0)?,
        name: r.get(1)?,
        owner: r.get(2)?,
        owner_id: r.get(3)?,
    })
}

/// The dataset `name` of the owner `owner_id` (names are unique per owner).
pub fn find_owned(conn: &Connection, owner_id: i64, name: &str) -> crate::store::Result<Option<Dataset>> {
    conn.query_row(
        &format!("{SELECT} WHERE d.owner_id = ?1 AND d.name = ?2"),
        params![owner_id, name],
        from_row,
    )
    .optional()
}

pub fn find_by_id(conn: &Connection, id: i64) -> crate::store::Result<Option<Dataset>> {
    conn.query_row(&format!("{SELECT} WHERE d.id = ?1"), [id], from_row)
        .optional()
}

/// The dataset `name` as `who` addresses it. Names are unique per owner: the caller's own
/// dataset of that name, else the one dataset of that name it may see (an admin sees every
/// dataset, others those they hold an active grant on); `owner` picks the owner when several
/// visible datasets share the name. A dataset the caller may not see is refused exactly as an
/// unknown one, so no answer confirms that another owner uses a name.
pub fn resolve(conn: &Connection, who: &Identity, name: &str, owner: Option<&str>) -> ApiResult<Dataset> {
    let admin = who.role == crate::domain::identities::Role::Admin;
    let mut st = conn.prepare(&format!(
        "{SELECT} WHERE d.name = ?1 AND (CAST(?2 AS TEXT) IS NULL OR i.name = ?2)
         AND (?3 = 1 OR d.owner_id = ?4 OR EXISTS (
             SELECT 1 FROM grants g WHERE g.dataset_id = d.id AND g.identity_id = ?4 AND g.revoked_at IS NULL))
         ORDER BY d.id"
    ))?;
    let found = st
        .query_map(params![name, owner, i64::from(admin), who.id], from_row)?
        .collect::<crate::store::Result<Vec<_>>>()?;
    if let Some(own) = found.iter().find(|d| d.owner_id == who.id) {
        return Ok(own.clone());
    }
    match found.len() {
        1 => Ok(found.into_iter().next().expect("one dataset")),
        0 => Err(ApiError::not_found(format!(
            "dataset '{name}'{} does not exist on this keyhost or is not visible to identity '{}'",
            owner.map(|o| format!(" of owner '{o}'")).unwrap_or_default(),
            who.name
        ))),
        _ => Err(ApiError::invalid(format!(
            "several datasets named '{name}' are visible to identity '{}' (owners {}); name the owner \
             (\"owner\": NAME in the request, ?owner=NAME in a URL)",
            who.name,
            found
                .iter()
                .map(|d| format!("'{}'", d.owner))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

pub fn insert(conn: &Connection, name: &str, owner: &Identity) -> crate::store::Result<Dataset> {
    let new_id: i64 = conn.query_row(
        "INSERT INTO datasets (name, owner_id, created_at) VALUES (?1, ?2, ?3) RETURNING id",
        params![name, owner.id, clock::now_micros()],
        crate::store::get0,
    )?;
    Ok(Dataset {
        id: new_id,
        name: name.to_owned(),
        owner: owner.name.clone(),
        owner_id: owner.id,
    })
}

/// All datasets (`None`), or those `identity` owns or holds an active grant on.
pub fn list_visible(conn: &Connection, identity: Option<i64>) -> crate::store::Result<Vec<Dataset>> {
    let mut st = conn.prepare(&format!(
        "{SELECT} WHERE CAST(?1 AS BIGINT) IS NULL OR d.owner_id = ?1 OR EXISTS (
             SELECT 1 FROM grants g WHERE g.dataset_id = d.id AND g.identity_id = ?1
             AND g.revoked_at IS NULL)
         ORDER BY d.id"
    ))?;
    let rows = st.query_map([identity], from_row)?;
    rows.collect()
}

/// Reserve `count` fresh row ids of the dataset; returns the first. Never reuses ids. One
/// statement that reads and advances the dataset's counter (`UPDATE .. RETURNING`): its row
/// lock orders concurrent allocations of one dataset, and allocations of other datasets do
/// not wait for it.
pub fn reserve_rids(conn: &Connection, dataset_id: i64, count: u64) -> ApiResult<u64> {
    let count_i = i64::try_from(count).map_err(|_| ApiError::invalid("rid count is too large"))?;
    let next: Option<i64> = conn
        .query_row(
            "UPDATE datasets SET next_rid = next_rid + ?2 WHERE id = ?1 AND next_rid <= ?3
             RETURNING next_rid - CAST(?2 AS BIGINT)",
            params![dataset_id, count_i, i64::MAX - count_i],
            |r| r.get(0),
        )
        .optional()?;
    let next = next.ok_or_else(|| ApiError::invalid("the dataset's row-id space is exhausted"))?;
    u64::try_from(next).map_err(|e| ApiError::internal("rid counter", &e))
}
