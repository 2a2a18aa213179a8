//! Encryption of the `match`, `group` and `fuzzy` facets of one column (see `ghostpii_core::det`
//! and `ghostpii_core::clk`): extra fields of the storage struct.

use std::collections::HashMap;

use ghostpii_core::det::{self, DetKey, PadKey, PadKind, Plain};
use ghostpii_core::meta::{ColumnMeta, Facet, LogicalType};
use ghostpii_core::{clk, search, CoreError};
use polars::prelude::*;
use pyo3::prelude::*;

use crate::columns::{FUZZY, GROUP, MATCH, SEARCH};
use crate::errors::{core_err, polars_err, EncryptionError};

fn key<'a>(keys: &'a HashMap<String, Vec<u8>>, name: &str, facet: &str) -> PyResult<&'a [u8]> {
    keys.get(name)
        .map(Vec::as_slice)
        .ok_or_else(|| EncryptionError::new_err(format!("{facet} facet requested without the '{name}' key")))
}

/// The values as the DET functions see them: UTF-8 bytes of text, stored integers otherwise.
enum Values {
    Text(Vec<Option<Vec<u8>>>),
    Int(Vec<Option<i64>>),
}

impl Values {
    fn of(s: &Series, meta: &ColumnMeta) -> PyResult<Values> {
        if meta.dtype == LogicalType::String {
            let ca = s.str().map_err(polars_err)?;
            return Ok(Values::Text(
                ca.iter().map(|v| v.map(|t| t.as_bytes().to_vec())).collect(),
            ));
        }
        let phys = s.to_physical_repr();
        let ints = phys.cast(&DataType::Int64).map_err(polars_err)?;
        Ok(Values::Int(ints.i64().map_err(polars_err)?.iter().collect()))
    }

    fn plain(&self) -> Vec<Option<Plain<'_>>> {
        match self {
            Values::Text(v) => v.iter().map(|x| x.as_deref().map(Plain::Text)).collect(),
            Values::Int(v) => v.iter().map(|x| x.map(Plain::Int)).collect(),
        }
    }
}

fn binary_field<const N: usize>(name: &str, cells: Vec<Option<[u8; N]>>) -> Series {
    let ca: BinaryChunked = cells.iter().map(|c| c.as_ref().map(|b| b.as_slice())).collect();
    ca.with_name(name.into()).into_series()
}

/// The storage fields of the match/group/fuzzy facets of `s` (rows `rids`). `fuzzy_text` is
/// the normalised text the Bloom filters encode (strings of dates and integers, too).
pub fn encrypt_fields(
    s: &Series,
    meta: &ColumnMeta,
    rids: &[u64],
    keys: &HashMap<String, Vec<u8>>,
    fuzzy_text: Option<&Series>,
) -> PyResult<Vec<Series>> {
    let mut out = Vec::new();
    let wants = |f| meta.has(f);
    if !(wants(Facet::Match) || wants(Facet::Group) || wants(Facet::Fuzzy) || wants(Facet::Search)) {
        return Ok(out);
    }
    let values = Values::of(s, meta)?;
    let plain = values.plain();
    if wants(Facet::Match) {
        let k = DetKey::try_from_slice(key(keys, "match", "match")?).map_err(core_err)?;
        out.push(binary_field(MATCH, k.match_tags(rids, &plain)));
    }
    if wants(Facet::Group) {
        let d = DetKey::try_from_slice(key(keys, "group_det", "group")?).map_err(core_err)?;
        let p = PadKey::try_from_slice(key(keys, "group_pad", "group")?).map_err(core_err)?;
        out.push(binary_field(GROUP, det::group_cells(&d, &p, rids, &plain)));
    }
    if wants(Facet::Fuzzy) {
        let c = DetKey::try_from_slice(key(keys, "clk", "fuzzy")?).map_err(core_err)?;
        let p = PadKey::try_from_slice(key(keys, "fuzzy_seal", "fuzzy")?).map_err(core_err)?;
        let text = fuzzy_text.ok_or_else(|| EncryptionError::new_err("fuzzy facet requested without its text"))?;
        let text = text.str().map_err(polars_err)?;
        if text.len() != rids.len() {
            return Err(core_err(CoreError::InvalidMetadata(
                "fuzzy text has the wrong length".into(),
            )));
        }
        let vals: Vec<Option<&str>> = text.iter().collect();
        let filters = clk::encode_many(&c, meta.fuzzy_label(), &vals);
        let seeds = p.pads(PadKind::Fuzzy, rids);
        let cells: Vec<Option<[u8; clk::BYTES]>> = filters
            .iter()
            .enumerate()
            .map(|(i, f)| {
                f.as_ref().map(|f| {
                    let seed: [u8; 16] = seeds[16 * i..16 * i + 16].try_into().expect("16-byte seed");
                    clk::seal(f, &seed)
                })
            })
            .collect();
        out.push(binary_field(FUZZY, cells));
    }
    if wants(Facet::Search) {
        out.push(search_field(s, meta, rids, keys)?);
    }
    Ok(out)
}

/// The `search` facet's cells (`ghostpii_core::search`): one fixed-size cell of rid-bound
/// prefix, suffix and q-gram tags per row.
fn search_field(s: &Series, meta: &ColumnMeta, rids: &[u64], keys: &HashMap<String, Vec<u8>>) -> PyResult<Series> {
    let p = meta
        .search
        .as_ref()
        .ok_or_else(|| EncryptionError::new_err("search facet requested without its prefix/substring lengths"))?;
    p.validate().map_err(core_err)?;
    let k = DetKey::try_from_slice(key(keys, "search", "search")?).map_err(core_err)?;
    let ca = s.str().map_err(polars_err)?;
    let vals: Vec<Option<&str>> = ca.iter().collect();
    let cells = search::encrypt_many(&k, p, rids, &vals).map_err(|i| {
        EncryptionError::new_err(format!(
            "column '{}': the value at row {i} has {} characters, more than max_length = {} declared for its \
             search facet; raise max_length in gp.text(..., max_length=...) or shorten the value",
            meta.column,
            vals[i].map_or(0, |v| v.chars().count()),
            p.max_length
        ))
    })?;
    let ca: BinaryChunked = cells.iter().map(|c| c.as_deref()).collect();
    Ok(ca.with_name(SEARCH.into()).into_series())
}
