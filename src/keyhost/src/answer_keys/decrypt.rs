//! `decrypt` descriptors: per-row keys of the `num` or `val` facet for the requested rows.

use ghostpii_core::{ColumnKeys, Facet, RidSet};
use serde_json::json;
use zeroize::Zeroizing;

use super::payload::Computed;
use super::{authorize, check_rids, column_epoch, dataset, set_authority, Ctx};
use crate::domain::audit::NewEntry;
use crate::domain::columns;
use crate::domain::grants::Operation;
use crate::error::{ApiError, ApiResult};

pub(super) struct DecryptWork {
    rids: RidSet,
    keys: Box<ColumnKeys>,
    facet: Facet,
}

pub(super) fn plan(
    cx: &mut Ctx<'_>,
    entry: &mut NewEntry,
    dataset_id: i64,
    column_id: i64,
    epoch: u32,
    facet: &str,
    rids: RidSet,
) -> ApiResult<DecryptWork> {
    entry.params = json!({"dataset_id": dataset_id, "column_id": column_id, "epoch": epoch, "facet": facet});
    let ds = dataset(cx, dataset_id)?;
    entry.dataset = Some(ds.name.clone());
    let (col, keys) = column_epoch(cx, &ds, column_id, epoch)?;
    entry.column = Some(col.name.clone());
    let facet = columns::parse_facet(facet)
        .filter(|f| matches!(f, Facet::Num | Facet::Val) && col.spec.has(*f))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "column '{}' has no per-row keys for facet '{facet}' (decryptable facets it has: {})",
                col.name,
                col.spec
                    .facets
                    .iter()
                    .filter(|f| matches!(f, Facet::Num | Facet::Val))
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let auth = authorize(cx, &ds, &col.name, Operation::Decrypt)?;
    set_authority(entry, std::slice::from_ref(&auth));
    check_rids(cx, &col, &rids)?;
    Ok(DecryptWork {
        rids,
        keys: Box::new(keys),
        facet,
    })
}

pub(super) fn compute(w: DecryptWork) -> Computed {
    let v = w.rids.to_vec();
    let bytes: Zeroizing<Vec<u8>> = Zeroizing::new(match w.facet {
        Facet::Num => {
            let masks = Zeroizing::new(w.keys.num.masks(&v));
            let mut out = Vec::with_capacity(masks.len() * 16);
            for m in masks.iter() {
                out.extend_from_slice(&m.to_le_bytes());
            }
            out
        }
        // `plan` admits only num and val.
        _ => w.keys.val.row_keys(&v),
    });
    Computed::deterministic_bytes("keys", bytes)
}
