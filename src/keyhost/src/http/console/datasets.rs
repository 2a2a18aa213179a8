//! The datasets page (the datasets the signed-in identity manages) and one dataset's page:
//! its columns (dtype, facets, bounds, key epochs), answer-key activity over time and budget
//! use per identity.

use crate::store::{params, Connection};
use axum::extract::{Path, State};
use axum::response::Response;

use super::api;
use super::budgets;
use super::charts::{self, Bucket, BudgetRow};
use super::html::{esc, link, row, seg, table};
use super::layout;
use super::lookup::{columns_of, managed};
use super::session::Console;
use crate::domain::columns::{self, Column};
use crate::domain::datasets::{self, Dataset};
use crate::domain::identities::Identity;
use crate::domain::policy;
use crate::error::ApiResult;
use crate::state::AppState;

/// Audit operations that are answer keys (the descriptors of `POST /v1/answer-keys`).
pub const ANSWER_OPS: &str = "('sum', 'decrypt', 'compare', 'score')";
/// Bars of the activity chart.
const BUCKETS: i64 = 24;

/// The datasets `who` manages: all for an admin, its own for an owner.
fn managed_list(conn: &Connection, who: &Identity) -> ApiResult<Vec<(Dataset, usize, usize)>> {
    let filter = if policy::is_admin(who) { None } else { Some(who.id) };
    let mut out = Vec::new();
    for ds in datasets::list_visible(conn, filter)? {
        if !policy::can_manage(who, &ds) {
            continue;
        }
        let cols: i64 = conn.query_row("SELECT COUNT(*) FROM columns WHERE dataset_id = ?1", [ds.id], |r| {
            r.get(0)
        })?;
        let grants: i64 = conn.query_row(
            "SELECT COUNT(*) FROM grants WHERE dataset_id = ?1 AND revoked_at IS NULL",
            [ds.id],
            |r| r.get(0),
        )?;
        out.push((ds, cols as usize, grants as usize));
    }
    Ok(out)
}

/// `GET /console/datasets`
pub async fn list(State(st): State<AppState>, c: Console) -> Response {
    let who = c.who.clone();
    let data = match st.db(move |conn, _| managed_list(conn, &who)).await {
        Ok(d) => d,
        Err(e) => return api::failed(&c, &e),
    };
    let rows: Vec<String> = data
        .iter()
        .map(|(ds, cols, grants)| {
            let base = format!("/console/datasets/{}", seg(&ds.name));
            row(
                None,
                &[
                    link(&base, &ds.name),
                    esc(&ds.owner),
                    cols.to_string(),
                    grants.to_string(),
                    format!(
                        "{} · {} · {}",
                        link(&format!("{base}/grants"), "grants"),
                        link(&format!("{base}/budgets"), "budgets"),
                        link(&format!("/console/audit?dataset={}", seg(&ds.name)), "audit")
                    ),
                ],
            )
        })
        .collect();
    let scope = if c.is_admin() {
        "Every dataset of this keyhost."
    } else {
        "The datasets you own."
    };
    let body = format!(
        "<p class=\"hint\">{scope}</p>{}",
        table(
            &["dataset", "owner", "columns", "active grants", ""],
            &rows,
            "No datasets yet: create one with gp.Keyhost / admin.create_dataset(...)."
        )
    );
    layout::page(&c, "Datasets", "datasets", &body)
}

struct DatasetPage {
    ds: Dataset,
    columns: Vec<(Column, i64)>,
    activity: Vec<Bucket>,
    budgets: Vec<BudgetRow>,
}

/// Answer keys issued and refused on the dataset in [`BUCKETS`] equal spans of time from
/// its first to its last answer-key entry (one grouped query).
fn activity(conn: &Connection, ds: &Dataset) -> ApiResult<Vec<Bucket>> {
    // dataset names are unique per owner only: entries filed under this dataset's owner
    let owned = |n: u8| format!("idx IN (SELECT idx FROM audit_readers WHERE owner_id = ?{n})");
    let dataset = ds.name.as_str();
    let (lo, hi): (Option<i64>, Option<i64>) = conn.query_row(
        &format!(
            "SELECT MIN(time), MAX(time) FROM audit WHERE dataset = ?1 AND operation IN {ANSWER_OPS} AND {}",
            owned(2)
        ),
        params![dataset, ds.owner_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(Vec::new());
    };
    let width = ((hi - lo) / BUCKETS + 1).max(1);
    let mut buckets: Vec<Bucket> = (0..BUCKETS)
        .map(|i| Bucket {
            start_micros: lo + i * width,
            width_micros: width,
            issued: 0,
            refused: 0,
        })
        .collect();
    let mut st = conn.prepare(&format!(
        "SELECT (time - ?2) / ?3, decision = 'refused', COUNT(*) FROM audit
         WHERE dataset = ?1 AND operation IN {ANSWER_OPS} AND {} GROUP BY 1, 2",
        owned(4)
    ))?;
    let rows = st.query_map(params![dataset, lo, width, ds.owner_id], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?, r.get::<_, u64>(2)?))
    })?;
    for r in rows {
        let (b, refused, n) = r?;
        if let Some(bucket) = usize::try_from(b).ok().and_then(|b| buckets.get_mut(b)) {
            if refused {
                bucket.refused += n;
            } else {
                bucket.issued += n;
            }
        }
    }
    Ok(buckets)
}

fn load(conn: &Connection, who: &Identity, name: &str) -> ApiResult<DatasetPage> {
    let ds = managed(conn, who, name)?;
    Ok(DatasetPage {
        columns: columns_of(conn, ds.id)?,
        activity: activity(conn, &ds)?,
        budgets: budgets::rows(conn, &ds)?,
        ds,
    })
}

fn columns_table(columns: &[(Column, i64)]) -> String {
    let rows: Vec<String> = columns
        .iter()
        .map(|(c, epochs)| {
            let facets: Vec<&str> = c.spec.facets.iter().map(|f| f.as_str()).collect();
            let bounds = c
                .spec
                .bounds
                .map(|(lo, hi)| format!("[{lo}, {hi}]"))
                .unwrap_or_else(|| "—".into());
            let ord = c
                .spec
                .ord
                .as_ref()
                .map(|o| format!(" (order domain offset {}, {} bits)", o.offset, o.bits))
                .unwrap_or_default();
            row(
                None,
                &[
                    esc(&c.name),
                    esc(&columns::dtype_str(c.spec.dtype)),
                    c.spec.scale.to_string(),
                    esc(&format!("{}{ord}", facets.join(", "))),
                    esc(&bounds),
                    format!("{} of {epochs}", c.current_epoch),
                ],
            )
        })
        .collect();
    table(
        &["column", "dtype", "scale", "facets", "bounds (stored)", "current epoch"],
        &rows,
        "No columns registered yet: gp.encrypt(df, dataset, schema) registers them.",
    )
}

/// `GET /console/datasets/{dataset}`
pub async fn show(State(st): State<AppState>, c: Console, Path(name): Path<String>) -> Response {
    let who = c.who.clone();
    let p = match st
        .db(move |conn, st| {
            st.integrate_audit(conn)?; // the activity chart reads the log
            load(conn, &who, &name)
        })
        .await
    {
        Ok(p) => p,
        Err(e) => return api::failed(&c, &e),
    };
    let base = format!("/console/datasets/{}", seg(&p.ds.name));
    let body = format!(
        "<p>Owner <b>{}</b> · {} · {} · {}</p>\
         <h2>Columns</h2>{}\
         <h2>Answer keys over time</h2>{}\
         <h2>Budget use per identity</h2>{}",
        esc(&p.ds.owner),
        link(&format!("{base}/grants"), "grants"),
        link(&format!("{base}/budgets"), "budgets"),
        link(&format!("/console/audit?dataset={}", seg(&p.ds.name)), "audit log"),
        columns_table(&p.columns),
        charts::activity(&p.activity),
        charts::budgets(&p.budgets),
    );
    layout::page(&c, &format!("Dataset {}", p.ds.name), "datasets", &body)
}
