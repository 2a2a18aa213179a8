//! `compare` descriptors: the comparison token (Lewi–Wu left ciphertext) of one constant of a
//! column with the `ord` facet, bound to the column epoch.
//!
//! Checks: a `compare` grant (owner/admin implicit), the `ord` facet, the constant inside the
//! column's order domain and inside the grant's `constants`/`range`; and, when recorded, at
//! most `max_constants` distinct constants ever issued to the identity on the column
//! (re-issuing one already issued is always allowed).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ghostpii_core::meta::key_binding;
use ghostpii_core::{ColumnKeys, Facet, OreParams};
use serde_json::{json, Value};

use super::{authorize, column_epoch, dataset, set_authority, Ctx, Effect};
use crate::domain::audit::NewEntry;
use crate::domain::grants::Operation;
use crate::domain::policy;
use crate::error::{reason, ApiError, ApiResult};

pub(super) struct CompareWork {
    keys: Box<ColumnKeys>,
    params: OreParams,
    binding: String,
    constant: i64,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn plan(
    cx: &mut Ctx<'_>,
    entry: &mut NewEntry,
    effects: &mut Vec<Effect>,
    dataset_id: i64,
    column_id: i64,
    epoch: u32,
    constant: i64,
) -> ApiResult<CompareWork> {
    entry.params = json!({"dataset_id": dataset_id, "column_id": column_id, "epoch": epoch, "constant": constant});
    entry.rid_count = Some(0);
    let ds = dataset(cx, dataset_id)?;
    entry.dataset = Some(ds.name.clone());
    let (col, keys) = column_epoch(cx, &ds, column_id, epoch)?;
    entry.column = Some(col.name.clone());
    let params = match (col.spec.has(Facet::Ord), col.spec.ord) {
        (true, Some(p)) => p,
        _ => {
            return Err(ApiError::invalid(format!(
                "column '{}' of dataset '{}' was not encrypted with compare=True (it has no 'ord' facet), \
                 so it cannot be compared with constants; encrypt it with e.g. gp.date(compare=True)",
                col.name, ds.name
            )))
        }
    };
    let auth = authorize(cx, &ds, &col.name, Operation::Compare)?;
    set_authority(entry, std::slice::from_ref(&auth));
    if params.encode(constant).is_err() {
        return Err(ApiError::invalid(format!(
            "constant {constant} is outside the order domain of column '{}' ([{}, {}]); decide such \
             comparisons without a token",
            col.name,
            params.offset,
            params.offset as i128 + ((1i128 << params.bits) - 1)
        )));
    }
    let limit = auth.constant_limit(constant).ok_or_else(|| {
        ApiError::refused(
            reason::CONSTANT_NOT_ALLOWED,
            format!(
                "identity '{}' may not compare column '{}' of dataset '{}' with constant {constant} \
                 (stored encoding); its compare grants allow only: {}",
                cx.caller.name,
                col.name,
                ds.name,
                serde_json::to_string(&auth.allowed_constants()).unwrap_or_default()
            ),
        )
    })?;
    if matches!(auth, policy::Authority::Grant { .. }) {
        effects.push(Effect::DistinctConstant {
            identity_id: cx.caller.id,
            column_id: col.id,
            column: col.name.clone(),
            constant,
            max: limit,
        });
    }
    Ok(CompareWork {
        keys: Box::new(keys),
        params,
        binding: key_binding(ds.id, col.id, epoch),
        constant,
    })
}

pub(super) fn compute(w: CompareWork) -> Result<Value, ApiError> {
    let token = w
        .keys
        .ord
        .token(&w.params, &w.binding, w.constant)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(json!({"token": B64.encode(token)}))
}
