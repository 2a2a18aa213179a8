//! Reading encrypted columns: the extension type's metadata and its struct storage.

use ghostpii_core::meta::{ColumnMeta, Facet, ENCRYPTED_EXT_NAME};
use polars::prelude::*;

/// Field names of the storage struct.
pub const RID: &str = "rid";
pub const NUM: &str = "num";
pub const NUM_HI: &str = "num_hi";
pub const VAL: &str = "val";
pub const ORD: &str = "ord";

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
    pub valid: BooleanChunked,
}

impl EncryptedCells {
    pub fn from_series(s: &Series, what: &str) -> PolarsResult<Self> {
        let meta = meta_of(s.name(), s.dtype(), what)?;
        let storage = s.to_storage();
        let st = storage.struct_().map_err(
            |_| polars_err!(ComputeError: "ghostpii: column '{}' is corrupt: its storage is not a struct", s.name()),
        )?;
        let field = |n: &str| -> PolarsResult<UInt64Chunked> {
            let f = st.field_by_name(n).map_err(|_| {
                polars_err!(ComputeError: "ghostpii: column '{}' is corrupt: storage field '{n}' is missing", s.name())
            })?;
            let f = f.u64().map_err(|_| {
                polars_err!(ComputeError: "ghostpii: column '{}' is corrupt: storage field '{n}' is not u64", s.name())
            })?;
            Ok(f.rechunk().into_owned())
        };
        let rid = field(RID)?;
        let num = if meta.has(Facet::Num) {
            Some((field(NUM)?, field(NUM_HI)?))
        } else {
            None
        };
        let valid = storage.is_not_null().rechunk().into_owned();
        Ok(EncryptedCells { meta, rid, num, valid })
    }

    pub fn len(&self) -> usize {
        self.rid.len()
    }
}

/// Contiguous values of a rechunked u64 array, ignoring validity.
pub fn values(ca: &UInt64Chunked) -> &[u64] {
    ca.downcast_as_array().values().as_slice()
}
