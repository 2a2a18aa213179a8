//! `search` descriptors of kind `similarity`: the `fuzzy` encoding of one query constant
//! (`ghost.similarity`), computed with the column's CLK key and label as the owner encoded the
//! column's rows, without salt bits (`ghostpii_core::clk::encode_constant`). The audit entry
//! names the constant by its digest.
//!
//! Checks: a `link` grant that records `max_constants` (owner/admin implicit; a link grant
//! without it issues no similarity token), the `fuzzy` facet, a non-empty constant of at most
//! 1,024 characters, and at most `max_constants` distinct constants ever issued to the identity
//! on the column (re-issuing one is allowed; counted together with the column's match and
//! search constants). The token alone reveals nothing of the rows: comparing it with them
//! needs their seeds (`pads` descriptors, the same `link` grant).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ghostpii_core::clk;
use ghostpii_core::det::DetKey;
use ghostpii_core::Facet;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{constant_column, set_authority, Ctx, Effect};
use crate::domain::audit::NewEntry;
use crate::domain::grants::Operation;
use crate::domain::join_domains;
use crate::domain::policy::Authority;
use crate::error::{reason, ApiError, ApiResult};

/// Longest similarity constant (characters).
const MAX_CHARS: usize = 1024;

pub(super) struct SimilarityWork {
    key: DetKey,
    label: String,
    constant: String,
}

/// The limit on distinct constants of the identity's link grants: `Ok(None)` unlimited
/// (owner, admin), `Err` when no link grant records `max_constants`.
fn limit(auth: &Authority) -> Result<Option<u64>, ()> {
    match auth {
        Authority::Admin | Authority::Owner => Ok(None),
        Authority::Grant { grants } => grants
            .iter()
            .filter_map(|g| g.params.max_constants)
            .max()
            .map(Some)
            .ok_or(()),
    }
}

fn digest(c: &str) -> String {
    let h = Sha256::digest(format!("ghostpii/similarity-constant/v1|{c}").as_bytes());
    hex::encode(&h[..16])
}

pub(super) fn plan(
    cx: &mut Ctx<'_>,
    entry: &mut NewEntry,
    effects: &mut Vec<Effect>,
    column_epoch: (i64, i64, u32),
    constant: &str,
) -> ApiResult<SimilarityWork> {
    let (ds, col) = constant_column(cx, entry, column_epoch, json!({"kind": "similarity"}))?;
    let epoch = column_epoch.2;
    if !col.spec.has(Facet::Fuzzy) {
        return Err(ApiError::invalid(format!(
            "column '{}' of dataset '{}' was not encrypted with the 'fuzzy' facet, so it has no similarity to a \
             constant; encrypt it with gp.text(fuzzy=True)",
            col.name, ds.name
        )));
    }
    let auth = super::authorize(cx, &ds, &col.name, Operation::Link)?;
    set_authority(entry, std::slice::from_ref(&auth));
    let chars = constant.chars().count();
    if chars == 0 || chars > MAX_CHARS {
        return Err(ApiError::invalid(format!(
            "a similarity constant must have 1 to {MAX_CHARS} characters, got {chars}"
        )));
    }
    let d = digest(constant);
    super::note(entry, "constant_digest", json!(d));
    let max = limit(&auth).map_err(|()| {
        ApiError::refused(
            reason::CONSTANT_NOT_ALLOWED,
            format!(
                "identity '{}' may link column '{}' of dataset '{}' but not compare it with constants: its link \
                 grants set no max_constants (grant gp.allow.link('{}', max_constants=n))",
                cx.caller.name, col.name, ds.name, col.name
            ),
        )
    })?;
    effects.extend(Effect::match_constant(&auth, cx.caller.id, &col, d, max));
    let (_, shared) = join_domains::key_facet_keys(cx.conn, cx.st.master(), cx.st.keyhost_id(), &col, epoch)?;
    Ok(SimilarityWork {
        key: shared.clk,
        label: col.name.clone(),
        constant: constant.to_owned(),
    })
}

pub(super) fn compute(w: SimilarityWork) -> Value {
    let f = clk::encode_constant(&w.key, &w.label, &w.constant);
    json!({"token": B64.encode(clk::to_bytes(&f))})
}
