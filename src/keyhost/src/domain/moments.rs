//! `moments` grants: second moments (sums, squares and products of the `deg2` facet) among the
//! columns of one group, `gp.allow.moments(["age", "bmi", "charges"], ...)`.
//!
//! A moments grant is stored per column (one row per member, each listing the group in
//! `columns`). A `gram` descriptor's term on column `c` needs a moments grant on `c`; a term
//! on the product column of `a` and `b` (named `deg2:["a","b"]`, see `ghostpii_core::deg2`)
//! needs a moments grant on `a` listing `b` and one on `b` listing `a`.

use crate::store::Connection;
use ghostpii_core::deg2::parse_product_name;

use crate::domain::datasets::Dataset;
use crate::domain::grants::{GrantParams, Operation};
use crate::domain::identities::{validate_name, Identity};
use crate::domain::policy::{self, Authority};
use crate::error::{ApiError, ApiResult, MissingGrant};

/// Most columns in one moments group.
pub const MAX_GROUP: usize = 64;

/// Validate the `columns` of a moments grant on `column`; `base` holds the checked
/// `min_rows`/`epsilon`/`delta`/`budget`.
pub fn grant_params(
    _conn: &Connection,
    ds: &Dataset,
    column: &str,
    columns: Option<Vec<String>>,
    base: GrantParams,
) -> ApiResult<GrantParams> {
    let mut cols = columns.unwrap_or_else(|| vec![column.to_owned()]);
    if cols.is_empty() || cols.len() > MAX_GROUP {
        return Err(ApiError::invalid(format!(
            "a moments grant names 1 to {MAX_GROUP} columns, got {}",
            cols.len()
        )));
    }
    for c in &cols {
        validate_name("column", c)?;
        if parse_product_name(c).is_some() {
            return Err(ApiError::invalid(format!(
                "'{c}' is a product column of the deg2 facet; grant moments on its member columns instead"
            )));
        }
    }
    if !cols.iter().any(|c| c == column) {
        return Err(ApiError::invalid(format!(
            "the moments grant on column '{column}' of dataset '{}' must list it among its columns {cols:?}",
            ds.name
        )));
    }
    cols.sort();
    cols.dedup();
    Ok(GrantParams {
        columns: Some(cols),
        ..base
    })
}

/// Moments authority on `column`, keeping only grants whose group includes `with`.
fn authorize_with(conn: &Connection, who: &Identity, ds: &Dataset, column: &str, with: &str) -> ApiResult<Authority> {
    match policy::authorize(conn, who, ds, column, Operation::Moments)? {
        Authority::Grant { grants } => {
            let kept: Vec<_> = grants
                .into_iter()
                .filter(|g| g.params.columns.as_ref().is_none_or(|cs| cs.iter().any(|c| c == with)))
                .collect();
            if kept.is_empty() {
                let mut e = ApiError::missing_grant(
                    &who.name,
                    MissingGrant {
                        operation: "moments".into(),
                        dataset: ds.name.clone(),
                        column: Some(column.into()),
                    },
                );
                e.message = format!(
                    "identity '{}' has no 'moments' grant on column '{column}' of dataset '{}' that includes \
                     column '{with}' (products need both columns in one gp.allow.moments([...]) grant)",
                    who.name, ds.name
                );
                return Err(e);
            }
            Ok(Authority::Grant { grants: kept })
        }
        other => Ok(other),
    }
}

/// The authorities a `gram` term on keyhost column `name` needs (one, or two for a product).
pub fn authorize_term(conn: &Connection, who: &Identity, ds: &Dataset, name: &str) -> ApiResult<Vec<Authority>> {
    match parse_product_name(name) {
        Some((a, b)) => Ok(vec![
            authorize_with(conn, who, ds, &a, &b)?,
            authorize_with(conn, who, ds, &b, &a)?,
        ]),
        None => Ok(vec![policy::authorize(conn, who, ds, name, Operation::Moments)?]),
    }
}
