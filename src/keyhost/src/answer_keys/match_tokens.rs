//! `match` descriptors: the match token (DET of one constant) of a column with the `match`
//! facet, bound to the column epoch. The audit entry names the constant by its digest
//! (`match_constants.rs`) and, for integer and date columns, by its stored integer.
//!
//! Checks: a `match` grant (owner/admin implicit), the `match` facet, the constant of the
//! column's type and among the grant's `constants`; when recorded, at most `max_constants`
//! distinct constants ever issued to the identity on the column (re-issuing one is allowed).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ghostpii_core::det::DetKey;
use ghostpii_core::meta::key_binding;
use ghostpii_core::Facet;
use serde_json::{json, Value};

use super::{column_of, dataset, set_authority, Ctx, Effect};
use crate::domain::audit::NewEntry;
use crate::domain::grants::Operation;
use crate::domain::join_domains;
use crate::domain::match_constants::{self, MatchConst};
use crate::domain::policy::Authority;
use crate::error::{reason, ApiError, ApiResult};

pub(super) struct MatchWork {
    key: DetKey,
    binding: String,
    constant: MatchConst,
}

/// Whether the grants allow the constant, and the limit on distinct constants.
fn limit(auth: &Authority, key: &str) -> Option<Option<u64>> {
    match auth {
        Authority::Admin | Authority::Owner => Some(None),
        Authority::Grant { grants } => grants
            .iter()
            .filter(|g| {
                g.params
                    .match_constants
                    .as_ref()
                    .is_none_or(|cs| cs.binary_search_by(|c| c.as_str().cmp(key)).is_ok())
            })
            .map(|g| g.params.max_constants)
            .reduce(|a, b| match (a, b) {
                (Some(x), Some(y)) => Some(x.max(y)),
                _ => None,
            }),
    }
}

pub(super) fn plan(
    cx: &mut Ctx<'_>,
    entry: &mut NewEntry,
    effects: &mut Vec<Effect>,
    dataset_id: i64,
    column_id: i64,
    epoch: u32,
    constant: &Value,
) -> ApiResult<MatchWork> {
    entry.params = json!({"dataset_id": dataset_id, "column_id": column_id, "epoch": epoch});
    entry.rid_count = Some(0);
    let ds = dataset(cx, dataset_id)?;
    entry.dataset = Some(ds.name.clone());
    let col = column_of(cx, &ds, column_id)?;
    entry.column = Some(col.name.clone());
    if !col.spec.has(Facet::Match) {
        return Err(ApiError::invalid(format!(
            "column '{}' of dataset '{}' was not encrypted with match=True (it has no 'match' facet), so it \
             cannot be compared for equality; encrypt it with e.g. gp.text(match=True)",
            col.name, ds.name
        )));
    }
    let auth = super::authorize(cx, &ds, &col.name, Operation::Match)?;
    set_authority(entry, std::slice::from_ref(&auth));
    let c = match_constants::from_wire(&col, constant).map_err(ApiError::invalid)?;
    let digest = c.digest();
    super::note(entry, "constant_digest", json!(digest));
    if let MatchConst::Int(i) = c {
        super::note(entry, "constant", json!(i));
    }
    let max = limit(&auth, &c.key()).ok_or_else(|| {
        ApiError::refused(
            reason::CONSTANT_NOT_ALLOWED,
            format!(
                "identity '{}' may not match column '{}' of dataset '{}' against this constant; its match \
                 grants allow only: {}",
                cx.caller.name,
                col.name,
                ds.name,
                serde_json::to_string(&auth.allowed_constants()).unwrap_or_default()
            ),
        )
    })?;
    effects.extend(Effect::match_constant(&auth, cx.caller.id, &col, digest, max));
    let (local, _) = join_domains::key_facet_keys(cx.conn, cx.st.master(), cx.st.keyhost_id(), &col, epoch)?;
    Ok(MatchWork {
        key: local.match_key,
        binding: key_binding(ds.id, col.id, epoch),
        constant: c,
    })
}

pub(super) fn compute(w: MatchWork) -> Value {
    let token = w.key.match_token(&w.binding, w.constant.plain());
    json!({"token": B64.encode(token)})
}
