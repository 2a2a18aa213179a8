//! Populations: what ties an owner's datasets together for the disclosure rule.
//!
//! The keyhost cannot see which rows of two datasets are the same people, but an analyst can
//! (the same order, a join key). Exact sums over `A` in one dataset and over `A ∪ {r}` in a
//! second that holds the same column differ by one row; per-row scores `(1, 1)` on one and
//! `(2, 1)` on the other give every row's two values. The audit keeps its atoms per dataset, so
//! the rule is made conservative across datasets:
//!
//! - an exact answer (an exact `sum`/`sums`/`gram` under grants, or a `score`) on a column is
//!   refused (`population_overlap`) when another dataset of the same owner has a column of the
//!   same name with a `num` facet, unless the owner declared that the two datasets hold
//!   different people;
//! - the declaration is a *population* label, set by the owner when it creates the dataset
//!   (`POST /v1/datasets {"population": ...}`, `session.create_dataset(name, population=...)`)
//!   and fixed afterwards: two datasets with different labels are declared disjoint; a dataset
//!   without a label may hold anyone.
//!
//! DP answers are bounded by each dataset's budget and are not affected.

use crate::store::{params, Connection, OptionalExtension};

use crate::domain::datasets::Dataset;
use crate::error::{reason, ApiError, ApiResult};

/// The population label of a dataset, if its owner declared one.
pub fn of(conn: &Connection, dataset_id: i64) -> crate::store::Result<Option<String>> {
    conn.prepare_cached("SELECT population FROM dataset_populations WHERE dataset_id = ?1")?
        .query_row(params![dataset_id], |r| r.get(0))
        .optional()
}

/// Check a label: 1 to 128 characters, no control characters.
pub fn validate(label: &str) -> ApiResult<()> {
    if label.is_empty() || label.chars().count() > 128 || label.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "a population label has 1 to 128 characters and no control characters",
        ));
    }
    Ok(())
}

/// Record the label of a dataset being created.
pub fn set(conn: &Connection, dataset_id: i64, label: &str) -> crate::store::Result<()> {
    conn.prepare_cached("INSERT INTO dataset_populations (dataset_id, population) VALUES (?1, ?2)")?
        .execute(params![dataset_id, label])?;
    Ok(())
}

/// The base column names behind a keyhost column name (`deg2:["a","b"]` → `a`, `b`).
fn base_names(name: &str) -> Vec<String> {
    match ghostpii_core::deg2::parse_product_name(name) {
        Some((a, b)) => vec![a, b],
        None => vec![name.to_owned()],
    }
}

/// Refuse an exact answer on `columns` of `ds` if another dataset of the same owner holds a
/// column of one of these names and the two are not declared to hold different people.
pub fn check_exact(conn: &Connection, ds: &Dataset, columns: &[&str]) -> ApiResult<()> {
    let mine = of(conn, ds.id)?;
    let mut names: Vec<String> = columns.iter().flat_map(|c| base_names(c)).collect();
    names.sort_unstable();
    names.dedup();
    let mut st = conn.prepare_cached(
        "SELECT d.id, d.name, p.population FROM columns c
         JOIN datasets d ON d.id = c.dataset_id
         LEFT JOIN dataset_populations p ON p.dataset_id = d.id
         WHERE d.owner_id = ?1 AND d.id <> ?2 AND c.name = ?3
         ORDER BY d.id",
    )?;
    for name in &names {
        let others: Vec<(i64, String, Option<String>)> = st
            .query_map(params![ds.owner_id, ds.id, name], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<crate::store::Result<_>>()?;
        let mut overlapping = None;
        for (id, other, theirs) in &others {
            let same = match (&mine, theirs) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            // only a namesake that can be summed too (a `num` facet) gives a second answer
            if same
                && crate::domain::columns::find_by_name(conn, *id, name)?
                    .is_some_and(|c| c.spec.has(ghostpii_core::Facet::Num))
            {
                overlapping = Some(other);
                break;
            }
        }
        if let Some(other) = overlapping {
            return Err(ApiError::refused(
                reason::POPULATION_OVERLAP,
                format!(
                    "column '{name}' of dataset '{}' has a namesake in dataset '{other}' of the same owner, which \
                     may hold the same people: exact answers over both could be differenced row by row, so exact \
                     answers on it are refused; the owner can declare that the datasets hold different people by \
                     creating each with its own population label (create_dataset(name, population=...)), or \
                     grant epsilon (DP) instead",
                    ds.name
                ),
            ));
        }
    }
    Ok(())
}
