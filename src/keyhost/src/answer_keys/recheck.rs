//! Checks that must hold again when an answer key is recorded, and sum limits: the grants a
//! descriptor was planned on are still active in the record transaction (a grant revoked while
//! the batch was computed is not honoured), and a `linear_sum` whose weights could wrap the
//! 128-bit ring is refused.

use crate::store::{Connection, OptionalExtension};

use crate::domain::audit::NewEntry;
use crate::domain::columns::Column;
use crate::error::{ApiError, ApiResult};

/// Refuse if any grant named in the entry's `grant_ids` (set by `set_authority`) was revoked
/// since the descriptor was planned.
pub(super) fn grants_still_active(conn: &Connection, entry: &NewEntry) -> ApiResult<()> {
    let Some(ids) = entry.params.get("grant_ids").and_then(|v| v.as_array()) else {
        return Ok(());
    };
    let mut st = conn.prepare_cached("SELECT revoked_at IS NULL FROM grants WHERE id = ?1")?;
    for id in ids {
        let id = id
            .as_i64()
            .ok_or_else(|| ApiError::internal("grant re-check", &"grant id is not an integer"))?;
        let active: Option<bool> = st.query_row([id], |r| r.get(0)).optional()?;
        if active != Some(true) {
            return Err(ApiError::denied(format!(
                "grant {id} was revoked while this answer key was being computed, so it is not issued"
            )));
        }
    }
    Ok(())
}

/// Refuse a sum whose `Σ |w|·max(|lo|, |hi|)·rows` could reach 2^127 (the weighted sum could wrap).
pub(super) fn check_no_wrap(terms: &[(&Column, i64)], rows: u64) -> ApiResult<()> {
    let t: Vec<_> = terms.iter().map(|(c, w)| (*w, c.spec.bounds)).collect();
    if ghostpii_core::num::linear_sum_fits(&t, rows) {
        return Ok(());
    }
    let cols: Vec<String> = terms
        .iter()
        .map(|(c, w)| format!("{w}·'{}' (bounds {:?})", c.name, c.spec.bounds))
        .collect();
    Err(ApiError::invalid(format!(
        "the weighted sum {} over {rows} rows could exceed 2^127 and wrap the 128-bit ring, so it is \
         not answered; use smaller weights or columns with tighter declared bounds",
        cols.join(" + ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::datasets;
    use crate::domain::grants::{self, GrantParams, Operation};
    use crate::domain::identities::{self, Role};
    use crate::store as db;

    #[test]
    fn a_grant_revoked_after_planning_is_not_honoured() {
        let mut conn = db::open_sqlite(std::path::Path::new(":memory:")).unwrap();
        db::migrate(&mut conn).unwrap();
        let owner = identities::insert(&conn, "olivia", Role::Owner).unwrap();
        let analyst = identities::insert(&conn, "analyst", Role::Member).unwrap();
        let ds = datasets::insert(&conn, "patrons", &owner).unwrap();
        let g = grants::insert(
            &conn,
            analyst.id,
            ds.id,
            "income",
            Operation::Aggregate,
            &GrantParams::default(),
        )
        .unwrap();
        let entry = NewEntry {
            params: serde_json::json!({"grant_ids": [g]}),
            ..Default::default()
        };
        assert!(grants_still_active(&conn, &entry).is_ok());
        assert!(
            grants_still_active(&conn, &NewEntry::default()).is_ok(),
            "owner/admin: no grants to re-check"
        );
        grants::revoke(&conn, g).unwrap();
        let e = grants_still_active(&conn, &entry).unwrap_err();
        assert_eq!(e.reason, crate::error::reason::PERMISSION_DENIED);
        assert!(e.message.contains(&format!("grant {g} was revoked")), "{}", e.message);
    }
}
