//! `pads` descriptors: the per-row pads of the `group` facet (pseudonymous keys, under a
//! `group` grant) or the per-row sealing seeds of the `fuzzy` facet (record linkage, under a
//! `link` grant), for the requested rows only. The audit entry records the row count and the
//! digest of the rid set.

use ghostpii_core::det::{PadKey, PadKind};
use ghostpii_core::{Facet, RidSet};
use serde_json::json;
use zeroize::Zeroizing;

use super::payload::Computed;
use super::{check_rids, column_of, dataset, set_authority, Ctx};
use crate::domain::audit::NewEntry;
use crate::domain::grants::Operation;
use crate::domain::join_domains;
use crate::error::{ApiError, ApiResult};

pub(super) struct PadWork {
    rids: RidSet,
    key: PadKey,
    kind: PadKind,
}

/// The grant a `pads` descriptor of `facet` needs.
pub(super) fn operation(facet: &str) -> Operation {
    if facet == "fuzzy" {
        Operation::Link
    } else {
        Operation::Group
    }
}

pub(super) fn plan(
    cx: &mut Ctx<'_>,
    entry: &mut NewEntry,
    dataset_id: i64,
    column_id: i64,
    epoch: u32,
    facet: &str,
    rids: RidSet,
) -> ApiResult<PadWork> {
    entry.params = json!({"dataset_id": dataset_id, "column_id": column_id, "epoch": epoch, "facet": facet});
    let ds = dataset(cx, dataset_id)?;
    entry.dataset = Some(ds.name.clone());
    let col = column_of(cx, &ds, column_id)?;
    entry.column = Some(col.name.clone());
    let (kind, needed, hint) = match facet {
        "group" => (
            PadKind::Group,
            Facet::Group,
            "ghost.key() needs gp.text(group=True) or gp.integer(group=True)",
        ),
        "fuzzy" => (PadKind::Fuzzy, Facet::Fuzzy, "gp.link needs gp.text(fuzzy=True)"),
        other => {
            return Err(ApiError::invalid(format!(
                "unknown pad facet '{other}' (known: group, fuzzy)"
            )))
        }
    };
    if !col.spec.has(needed) {
        return Err(ApiError::invalid(format!(
            "column '{}' of dataset '{}' has no '{facet}' facet: {hint}",
            col.name, ds.name
        )));
    }
    let auth = super::authorize(cx, &ds, &col.name, operation(facet))?;
    set_authority(entry, std::slice::from_ref(&auth));
    let domain = join_domains::of_column(cx.conn, col.id)?;
    crate::domain::policy::check_key_holder(cx.conn, cx.caller, &ds, &col.name, domain.as_ref(), &auth)?;
    check_rids(cx, &col, &rids)?;
    let (local, _) = join_domains::key_facet_keys(cx.conn, cx.st.master(), cx.st.keyhost_id(), &col, epoch)?;
    let key = match kind {
        PadKind::Group => local.group_pad,
        PadKind::Fuzzy => local.fuzzy_seal,
    };
    Ok(PadWork { rids, key, kind })
}

pub(super) fn compute(w: PadWork) -> Computed {
    Computed::deterministic_bytes("pads", Zeroizing::new(w.key.pads(w.kind, &w.rids.to_vec())))
}
