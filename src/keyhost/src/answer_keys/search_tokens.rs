//! `search` descriptors: the search token of one constant (prefix, suffix or substring) of a
//! column with the `search` facet, bound to the column epoch (`ghostpii_core::search`). The
//! audit entry names the kind, the q-gram length and the constant by its digest.
//!
//! Checks: a `search` grant (owner/admin implicit), the `search` facet, a non-empty constant of
//! at most 1,024 characters (substring: at least q), and, when the grant records it, at most
//! `max_constants` distinct (kind, constant) pairs ever issued to the identity on the column
//! (re-issuing one is allowed; counted together with the column's match constants).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ghostpii_core::det::DetKey;
use ghostpii_core::meta::key_binding;
use ghostpii_core::search::{self, Kind};
use ghostpii_core::Facet;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{column_of, dataset, set_authority, Ctx, Effect};
use crate::domain::audit::NewEntry;
use crate::domain::grants::Operation;
use crate::domain::join_domains;
use crate::domain::policy::Authority;
use crate::error::{ApiError, ApiResult};

pub(super) struct SearchWork {
    key: DetKey,
    binding: String,
    kind: Kind,
    q: u32,
    constant: String,
}

/// The limit on distinct constants of the identity's search grants (`None`: unlimited).
fn limit(auth: &Authority) -> Option<u64> {
    match auth {
        Authority::Admin | Authority::Owner => None,
        Authority::Grant { grants } => grants
            .iter()
            .map(|g| g.params.max_constants)
            .reduce(|a, b| match (a, b) {
                (Some(x), Some(y)) => Some(x.max(y)),
                _ => None,
            })
            .flatten(),
    }
}

/// The digest naming a (kind, q, constant) in the audit log and the issued-constants ledger.
fn digest(kind: Kind, q: u32, c: &str) -> String {
    let h = Sha256::digest(format!("ghostpii/search-constant/v1|{}|{q}|{c}", kind.as_str()).as_bytes());
    hex::encode(&h[..16])
}

#[allow(clippy::too_many_arguments)]
pub(super) fn plan(
    cx: &mut Ctx<'_>,
    entry: &mut NewEntry,
    effects: &mut Vec<Effect>,
    dataset_id: i64,
    column_id: i64,
    epoch: u32,
    kind: &str,
    q: u32,
    constant: &str,
) -> ApiResult<SearchWork> {
    entry.params = json!({"dataset_id": dataset_id, "column_id": column_id, "epoch": epoch, "kind": kind});
    entry.rid_count = Some(0);
    let ds = dataset(cx, dataset_id)?;
    entry.dataset = Some(ds.name.clone());
    let col = column_of(cx, &ds, column_id)?;
    entry.column = Some(col.name.clone());
    let kind = Kind::parse(kind).ok_or_else(|| {
        ApiError::invalid(format!(
            "search kind '{kind}' is unknown; use 'prefix', 'suffix' or 'substring'"
        ))
    })?;
    if !col.spec.has(Facet::Search) {
        return Err(ApiError::invalid(format!(
            "column '{}' of dataset '{}' was not encrypted with the 'search' facet, so it cannot be searched \
             by prefix, suffix or substring; encrypt it with e.g. gp.text(prefix=(1, 2, 3), substring=3)",
            col.name, ds.name
        )));
    }
    let auth = super::authorize(cx, &ds, &col.name, Operation::Search)?;
    set_authority(entry, std::slice::from_ref(&auth));
    let chars = constant.chars().count();
    if chars == 0 || chars > search::MAX_LENGTH as usize {
        return Err(ApiError::invalid(format!(
            "a search constant must have 1 to {} characters, got {chars}",
            search::MAX_LENGTH
        )));
    }
    if kind == Kind::Substring && (q == 0 || q > search::MAX_PIECE || (q as usize) > chars) {
        return Err(ApiError::invalid(format!(
            "a substring search needs the column's q-gram length q (1..={}) and a constant of at least q \
             characters; got q = {q} and {chars} characters",
            search::MAX_PIECE
        )));
    }
    let q = if kind == Kind::Substring { q } else { 0 };
    let d = digest(kind, q, constant);
    super::note(entry, "constant_digest", json!(d));
    if kind == Kind::Substring {
        super::note(entry, "q", json!(q));
    }
    effects.extend(Effect::match_constant(&auth, cx.caller.id, &col, d, limit(&auth)));
    let (local, _) = join_domains::key_facet_keys(cx.conn, cx.st.master(), cx.st.keyhost_id(), &col, epoch)?;
    Ok(SearchWork {
        key: local.search_key,
        binding: key_binding(ds.id, col.id, epoch),
        kind,
        q,
        constant: constant.to_owned(),
    })
}

pub(super) fn compute(w: SearchWork) -> Result<Value, ApiError> {
    let token = search::token(&w.key, &w.binding, w.kind, w.q, &w.constant)
        .ok_or_else(|| ApiError::invalid("the search constant is shorter than the q-gram length"))?;
    Ok(json!({"token": B64.encode(token)}))
}
