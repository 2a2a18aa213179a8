//! What a caller may see when it asks for answer keys: a dataset it holds no grant on (and is
//! not the owner of) is not described, and neither is a column of it that it holds no grant on.
//! An unknown id and an invisible one get the same `permission_denied` refusal, naming only the
//! id asked for, so refusals cannot be used to enumerate datasets and columns.

use super::Ctx;
use crate::columns::{self, Column};
use crate::datasets::{self, Dataset};
use crate::error::{ApiError, ApiResult, MissingGrant};
use crate::policy;

/// The dataset, if the caller may see it (admin, owner, or any active grant on it). An unknown
/// dataset and one the caller may not see get the same refusal, which names only the id.
pub(super) fn dataset(cx: &mut Ctx<'_>, dataset_id: i64) -> ApiResult<Dataset> {
    let found = datasets::find_by_id(cx.conn, dataset_id)?;
    match found {
        Some(ds) if policy::can_manage(cx.caller, &ds) || holds_grant(cx, ds.id, None)? => Ok(ds),
        None if policy::is_admin(cx.caller) => Err(ApiError::not_found(format!(
            "dataset id {dataset_id} is unknown to this keyhost ({})",
            cx.st.keyhost_id()
        ))),
        _ => Err(not_visible(cx, format!("id {dataset_id}"), None)),
    }
}

/// The column of the dataset, if the caller may see it (admin, owner, or any active grant on
/// the column). An unknown column and one the caller may not see get the same refusal.
pub(super) fn column_of(cx: &mut Ctx<'_>, ds: &Dataset, column_id: i64) -> ApiResult<Column> {
    let found = columns::find_by_id(cx.conn, column_id)?.filter(|c| c.dataset_id == ds.id);
    match found {
        Some(col) if policy::can_manage(cx.caller, ds) || holds_grant(cx, ds.id, Some(&col.name))? => Ok(col),
        None if policy::can_manage(cx.caller, ds) => Err(ApiError::not_found(format!(
            "column id {column_id} of dataset '{}' is unknown to this keyhost ({})",
            ds.name,
            cx.st.keyhost_id()
        ))),
        _ => Err(not_visible(cx, ds.name.clone(), Some(format!("id {column_id}")))),
    }
}

fn holds_grant(cx: &mut Ctx<'_>, dataset_id: i64, column: Option<&str>) -> rusqlite::Result<bool> {
    let key = (dataset_id, column.map(str::to_owned));
    if let Some(v) = cx.cache.visible.get(&key) {
        return Ok(*v);
    }
    let v = cx.conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM grants WHERE identity_id = ?1 AND dataset_id = ?2
         AND (?3 IS NULL OR column_name = ?3) AND revoked_at IS NULL)",
        rusqlite::params![cx.caller.id, dataset_id, column],
        |r| r.get(0),
    )?;
    cx.cache.visible.insert(key, v);
    Ok(v)
}

fn not_visible(cx: &Ctx<'_>, dataset: String, column: Option<String>) -> ApiError {
    let mut e = ApiError::missing_grant(
        &cx.caller.name,
        MissingGrant {
            operation: cx.op.as_str().into(),
            dataset,
            column,
        },
    );
    e.message.push_str(&format!(
        " (or it does not exist on this keyhost, {}); ask the dataset's owner for a grant",
        cx.st.keyhost_id()
    ));
    e
}
