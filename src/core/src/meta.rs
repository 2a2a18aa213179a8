//! Column metadata: the JSON carried by the `ghostpii.encrypted` Arrow extension type.

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::FORMAT_VERSION;

/// Name of the Arrow/Polars extension type of encrypted columns.
pub const ENCRYPTED_EXT_NAME: &str = "ghostpii.encrypted";
/// Name of the Arrow/Polars extension type of sealed results.
pub const SEALED_EXT_NAME: &str = "ghostpii.sealed";
/// Name of the extension type of rows marked for decryption (revealed with per-row keys).
pub const SEALED_ROWS_EXT_NAME: &str = "ghostpii.sealed_rows";

/// The plaintext type a column had before encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogicalType {
    Int8,
    Int16,
    Int32,
    Int64,
    UInt8,
    UInt16,
    UInt32,
    Float32,
    Float64,
    Boolean,
    Date,
    Datetime,
    String,
}

impl LogicalType {
    pub fn is_numeric_like(self) -> bool {
        !matches!(self, LogicalType::String)
    }
}

/// The facets of an encrypted column (see ARCHITECTURE.md, "Column format").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Facet {
    Num,
    Val,
    Ord,
    /// Equality against constants: rid-bound tags `H(DET(v), rid)` (`det.rs`).
    Match,
    /// Pseudonymous keys for group_by / join / n_unique: `DET(v) ⊕ PRF(k, rid)` (`det.rs`).
    Group,
    /// Sealed, hardened Bloom-filter encodings for record linkage (`clk.rs`).
    Fuzzy,
    /// Prefix, suffix and substring search against constants: rid-bound piece tags (`search.rs`).
    Search,
}

impl Facet {
    pub fn as_str(self) -> &'static str {
        match self {
            Facet::Num => "num",
            Facet::Val => "val",
            Facet::Ord => "ord",
            Facet::Match => "match",
            Facet::Group => "group",
            Facet::Fuzzy => "fuzzy",
            Facet::Search => "search",
        }
    }
}

/// Everything a reader needs to know about an encrypted column, except keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnMeta {
    /// Format version of the storage layout.
    pub v: u32,
    /// Identifier of the keyhost that holds the keys.
    pub keyhost: String,
    /// Dataset name and id on that keyhost.
    pub dataset: String,
    pub dataset_id: i64,
    /// Column name at encryption time and its id on the keyhost.
    pub column: String,
    pub column_id: i64,
    /// Key epoch the cells were encrypted under.
    pub epoch: u32,
    /// Plaintext type.
    pub dtype: LogicalType,
    /// Time unit of datetimes ("ns", "us", "ms"), and their time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Fixed-point scale: the stored integer is `round(x * 10^scale)`.
    pub scale: u32,
    /// Declared bounds of the stored integers (after scaling), inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<(i64, i64)>,
    pub facets: Vec<Facet>,
    /// Order domain of the `ord` facet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ord: Option<crate::ore::OreParams>,
    /// The `deg2` facet: products of this column with others (and its square) stored in
    /// this column's storage struct (see `deg2.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<crate::deg2::Product>,
    /// Join domain of the `group` and `fuzzy` facets (columns of one domain join and link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_domain: Option<String>,
    /// Shape of the `search` facet (prefix/suffix lengths, q-gram length, maximum length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<crate::search::SearchParams>,
    /// Bigram space of the `fuzzy` facet: columns that name the same space hash their bigrams
    /// alike, so their encodings compare across columns (a given name and a surname swapped
    /// still match). Absent: the column's own name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuzzy_space: Option<String>,
}

impl ColumnMeta {
    /// The label that separates this column's bigrams in the `fuzzy` facet (`clk::encode`).
    pub fn fuzzy_label(&self) -> &str {
        self.fuzzy_space.as_deref().unwrap_or(&self.column)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("column metadata serializes")
    }

    pub fn from_json(s: &str) -> Result<Self> {
        let m: ColumnMeta = serde_json::from_str(s)
            .map_err(|e| CoreError::InvalidMetadata(format!("not ghostpii column metadata: {e}")))?;
        if m.v != FORMAT_VERSION {
            return Err(CoreError::InvalidMetadata(format!(
                "column format version {} is not supported (this build reads version {FORMAT_VERSION})",
                m.v
            )));
        }
        Ok(m)
    }

    pub fn has(&self, f: Facet) -> bool {
        self.facets.contains(&f)
    }

    /// The HKDF binding of this column's keys.
    pub fn binding(&self) -> String {
        key_binding(self.dataset_id, self.column_id, self.epoch)
    }
}

/// The string that binds derived keys and AEAD ciphertexts to one column epoch.
pub fn key_binding(dataset_id: i64, column_id: i64, epoch: u32) -> String {
    format!("{dataset_id}/{column_id}/{epoch}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_rejects_other_versions() {
        let m = ColumnMeta {
            v: FORMAT_VERSION,
            keyhost: "kh".into(),
            dataset: "d".into(),
            dataset_id: 1,
            column: "c".into(),
            column_id: 2,
            epoch: 1,
            dtype: LogicalType::Float64,
            time_unit: None,
            time_zone: None,
            scale: 2,
            bounds: Some((0, 100)),
            facets: vec![Facet::Num],
            ord: None,
            products: Vec::new(),
            join_domain: None,
            search: None,
            fuzzy_space: None,
        };
        assert_eq!(ColumnMeta::from_json(&m.to_json()).unwrap(), m);
        let other = m.to_json().replace("\"v\":1", "\"v\":99");
        assert!(ColumnMeta::from_json(&other).is_err());
        assert!(ColumnMeta::from_json("{}").is_err());
    }
}
