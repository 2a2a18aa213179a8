//! What a caller may see when it asks for answer keys: a dataset it holds no grant on (and is
//! not the owner of) is not described, nor are its columns. An unknown dataset id and an
//! invisible one get the same `permission_denied` refusal, naming only the id asked for, so
//! refusals cannot be used to enumerate datasets or their columns.

use super::Ctx;
use crate::domain::columns::{self, Column};
use crate::domain::datasets::{self, Dataset};
use crate::domain::policy;
use crate::error::{ApiError, ApiResult, MissingGrant};

/// The dataset, if the caller may see it (admin, owner, or any active grant on it). An unknown
/// dataset and one the caller may not see get the same refusal, which names only the id.
pub(super) fn dataset(cx: &mut Ctx<'_>, dataset_id: i64) -> ApiResult<Dataset> {
    // once per batch and dataset: a batch of many groups addresses one dataset
    let found = match cx.cache.datasets.get(&dataset_id) {
        Some(d) => d.clone(),
        None => {
            let d = datasets::find_by_id(cx.conn, dataset_id)?;
            cx.cache.datasets.insert(dataset_id, d.clone());
            d
        }
    };
    cx.seen_dataset = found.as_ref().map(|ds| ds.name.clone());
    cx.seen_owner = found.as_ref().map(|ds| ds.owner_id);
    match found {
        Some(ds) if policy::can_manage(cx.caller, &ds) || holds_grant(cx, ds.id)? => Ok(ds),
        None if policy::is_admin(cx.caller) => Err(ApiError::not_found(format!(
            "dataset id {dataset_id} is unknown to this keyhost ({})",
            cx.st.keyhost_id()
        ))),
        _ => Err(not_visible(cx, dataset_id)),
    }
}

/// The column of a dataset the caller may see (checked by [`dataset`]). Its columns are named in
/// the refusals: a caller with a grant on the dataset holds its data files, which name them.
pub(super) fn column_of(cx: &mut Ctx<'_>, ds: &Dataset, column_id: i64) -> ApiResult<Column> {
    columns::find_by_id(cx.conn, column_id)?
        .filter(|c| c.dataset_id == ds.id)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "column id {column_id} of dataset '{}' is unknown to this keyhost ({})",
                ds.name,
                cx.st.keyhost_id()
            ))
        })
}

/// The dataset and column a constant descriptor (a token of one constant: no rows) addresses,
/// named in its audit entry, whose `params` it sets to the column epoch and `extra`.
pub(super) fn constant_column(
    cx: &mut Ctx<'_>,
    entry: &mut crate::domain::audit::NewEntry,
    (dataset_id, column_id, epoch): (i64, i64, u32),
    extra: serde_json::Value,
) -> ApiResult<(Dataset, Column)> {
    let mut params = serde_json::json!({"dataset_id": dataset_id, "column_id": column_id, "epoch": epoch});
    if let (serde_json::Value::Object(p), serde_json::Value::Object(e)) = (&mut params, extra) {
        p.extend(e);
    }
    entry.params = params;
    entry.rid_count = Some(0);
    let ds = dataset(cx, dataset_id)?;
    entry.dataset = Some(ds.name.clone());
    let col = column_of(cx, &ds, column_id)?;
    entry.column = Some(col.name.clone());
    Ok((ds, col))
}

fn holds_grant(cx: &mut Ctx<'_>, dataset_id: i64) -> crate::store::Result<bool> {
    if let Some(v) = cx.cache.visible.get(&dataset_id) {
        return Ok(*v);
    }
    let v = cx.conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM grants WHERE identity_id = ?1 AND dataset_id = ?2
         AND revoked_at IS NULL)",
        crate::store::params![cx.caller.id, dataset_id],
        |r| r.get(0),
    )?;
    cx.cache.visible.insert(dataset_id, v);
    Ok(v)
}

fn not_visible(cx: &Ctx<'_>, dataset_id: i64) -> ApiError {
    let op = cx.op.as_str();
    let mut e = ApiError::missing_grant(
        &cx.caller.name,
        MissingGrant {
            operation: op.into(),
            dataset: format!("id {dataset_id}"),
            column: None,
        },
    );
    e.message = format!(
        "identity '{}' holds no grant on dataset id {dataset_id}, or no such dataset exists on this \
         keyhost ({}); to use it, ask its owner for a grant (operation '{op}')",
        cx.caller.name,
        cx.st.keyhost_id()
    );
    e
}
