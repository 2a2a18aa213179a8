//! Reading encrypted columns: the extension type's metadata and its struct storage.

use ghostpii_core::meta::{ColumnMeta, Facet, ENCRYPTED_EXT_NAME};
use polars::prelude::*;
use polars_arrow::bitmap::Bitmap;

/// Field names of the storage struct.
pub const RID: &str = "rid";
pub const NUM: &str = "num";
pub const NUM_HI: &str = "num_hi";
pub const VAL: &str = "val";
pub const ORD: &str = "ord";
pub const MATCH: &str = "match";
pub const GROUP: &str = "group";
pub const FUZZY: &str = "fuzzy";
pub const SEARCH: &str = "search";

/// The metadata of an encrypted column's dtype, or a clear error naming the column.
pub fn meta_of(name: &str, dtype: &DataType, what: &str) -> PolarsResult<ColumnMeta> {
    if let DataType::Extension(typ, _) = dtype {
        if typ.name() == ENCRYPTED_EXT_NAME {
            let md = typ.serialize_metadata().ok_or_else(|| {
                polars_err!(ComputeError: "ghostpii: column '{name}' has no ghostpii metadata; it was not written by ghostpii")
            })?;
            return ColumnMeta::from_json(&md).map_err(|e| polars_err!(ComputeError: "ghostpii: column '{name}': {e}"));
        }
    }
    polars_bail!(
        InvalidOperation:
        "ghostpii: {what} needs an encrypted column, but column '{name}' has dtype {dtype}; \
         encrypt it first, e.g. gp.encrypt(df, dataset, {{'{name}': gp.number()}})"
    )
}

/// Demand a facet, naming how to get it.
pub fn require_facet(meta: &ColumnMeta, facet: Facet, what: &str) -> PolarsResult<()> {
    if meta.has(facet) {
        return Ok(());
    }
    polars_bail!(
        InvalidOperation:
        "ghostpii: {what} needs the '{}' facet, which column '{}' was not encrypted with (it has {:?}); \
         numbers, integers, dates and booleans get it by default",
        facet.as_str(), meta.column, meta.facets
    )
}

/// An encrypted column split into plain slices.
pub struct EncryptedCells {
    pub meta: ColumnMeta,
    pub rid: UInt64Chunked,
    pub num: Option<(UInt64Chunked, UInt64Chunked)>,
    pub val: Option<BinaryChunked>,
    pub ord: Option<BinaryChunked>,
    pub valid: BooleanChunked,
}

impl EncryptedCells {
    pub fn from_series(s: &Series, what: &str) -> PolarsResult<Self> {
        let meta = meta_of(s.name(), s.dtype(), what)?;
        Self::from_storage(s.name(), meta, s.to_storage())
    }

    /// Split the storage struct of column `name` (already known to be described by `meta`).
    pub fn from_storage(name: &str, meta: ColumnMeta, storage: &Series) -> PolarsResult<Self> {
        let corrupt = |what: String| polars_err!(ComputeError: "ghostpii: column '{name}' is corrupt: {what}");
        let st = storage
            .struct_()
            .map_err(|_| corrupt("its storage is not a struct".into()))?;
        let field = |n: &str| {
            st.field_by_name(n)
                .map_err(|_| corrupt(format!("storage field '{n}' is missing")))
        };
        let u64_field = |n: &str| -> PolarsResult<UInt64Chunked> {
            let f = field(n)?;
            let f = f
                .u64()
                .map_err(|_| corrupt(format!("storage field '{n}' is not u64")))?;
            Ok(f.rechunk().into_owned())
        };
        let bin_field = |n: &str| -> PolarsResult<BinaryChunked> {
            let f = field(n)?;
            let f = f
                .binary()
                .map_err(|_| corrupt(format!("storage field '{n}' is not binary")))?;
            Ok(f.rechunk().into_owned())
        };
        let rid = u64_field(RID)?;
        let num = match meta.has(Facet::Num) {
            true => Some((u64_field(NUM)?, u64_field(NUM_HI)?)),
            false => None,
        };
        let val = meta.has(Facet::Val).then(|| bin_field(VAL)).transpose()?;
        let ord = meta.has(Facet::Ord).then(|| bin_field(ORD)).transpose()?;
        let valid = storage.is_not_null().rechunk().into_owned();
        Ok(EncryptedCells {
            meta,
            rid,
            num,
            val,
            ord,
            valid,
        })
    }

    pub fn len(&self) -> usize {
        self.rid.len()
    }
}

/// Contiguous values of a rechunked u64 array, ignoring validity.
pub fn values(ca: &UInt64Chunked) -> &[u64] {
    ca.downcast_as_array().values().as_slice()
}

/// The rids, one binary facet's cells (`field`) and the validity of an encrypted column, each
/// in one chunk; a storage of another shape is reported as a corrupt column.
pub fn rids_and_binary_facet(s: &Series, field: &str) -> PolarsResult<(UInt64Chunked, BinaryChunked, Bitmap)> {
    let storage = s.to_storage();
    let corrupt = |w: &str| polars_err!(ComputeError: "ghostpii: column '{}' is corrupt: {w}", s.name());
    let st = storage.struct_().map_err(|_| corrupt("its storage is not a struct"))?;
    let rid = st.field_by_name(RID).map_err(|_| corrupt("no rid field"))?;
    let rid = rid.u64().map_err(|_| corrupt("rid is not u64"))?.rechunk().into_owned();
    let cells = st
        .field_by_name(field)
        .map_err(|_| corrupt(&format!("no {field} field")))?;
    let cells = cells
        .binary()
        .map_err(|_| corrupt(&format!("{field} is not binary")))?
        .rechunk()
        .into_owned();
    let valid = storage.is_not_null().rechunk().into_owned();
    let valid = valid.downcast_as_array().values().clone();
    Ok((rid, cells, valid))
}
