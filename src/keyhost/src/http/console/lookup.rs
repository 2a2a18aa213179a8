//! The lookups a dataset's console pages start with: the dataset, if the signed-in identity may
//! manage it ([`managed`]), and its columns ([`columns_of`]).

use crate::domain::columns::{self, Column};
use crate::domain::datasets::{self, Dataset};
use crate::domain::identities::Identity;
use crate::domain::policy;
use crate::error::ApiResult;
use crate::store::Connection;

/// The dataset called `name`, if `who` may manage it (admin or its owner).
pub fn managed(conn: &Connection, who: &Identity, name: &str) -> ApiResult<Dataset> {
    let ds = datasets::resolve(conn, who, name, None)?;
    policy::require_manage(who, &ds, "open the console pages")?;
    Ok(ds)
}

/// Every registered column of a dataset, with its number of key epochs.
pub fn columns_of(conn: &Connection, dataset_id: i64) -> ApiResult<Vec<(Column, i64)>> {
    let mut st = conn.prepare(
        "SELECT c.id, (SELECT COUNT(*) FROM column_epochs e WHERE e.column_id = c.id)
         FROM columns c WHERE c.dataset_id = ?1 ORDER BY c.id",
    )?;
    let ids = st
        .query_map([dataset_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?
        .collect::<crate::store::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(ids.len());
    for (id, epochs) in ids {
        if let Some(c) = columns::find_by_id(conn, id)? {
            out.push((c, epochs));
        }
    }
    Ok(out)
}
