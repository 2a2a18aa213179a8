//! ghostpii-core: the cryptographic schemes and the column format of ghostpii.
//!
//! This crate has no Polars and no HTTP dependency. It is shared by the keyhost (which
//! derives answer keys) and by the Polars/Python layer (which encrypts and computes over
//! ciphertext). Every scheme's leakage is described in `docs/threat-model.md`.

pub mod clk;
pub mod deg2;
pub mod det;
pub mod error;
mod facet_key;
pub mod frame;
pub mod keys;
pub mod mask_blocks;
pub mod meta;
pub mod multiset;
pub mod multiset_sum;
pub mod num;
pub mod ore;
pub mod rid_blocks;
pub mod rid_encoding;
pub mod rids;
pub mod sealed;
pub mod sealed_format;
pub mod sealed_gram;
pub mod search;
pub mod val;
mod varint;

pub use error::CoreError;
pub use keys::{ColumnKeys, NumKey, RootKey, ValKey};
pub use meta::{ColumnMeta, Facet, LogicalType};
pub use multiset::{Repeat, RidMultiset};
pub use ore::{OreKey, OreParams, OreToken};
pub use rids::RidSet;

/// Version of the on-disk column format written into every column's metadata.
pub const FORMAT_VERSION: u32 = 1;
