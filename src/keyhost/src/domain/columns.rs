//! Columns, their settings and key epochs, and the row ids allocated to them.
//!
//! Each epoch's root key is stored wrapped under the master key (see `master_key.rs`).

use std::ops::RangeInclusive;

use crate::store::{params, Connection, OptionalExtension};
use ghostpii_core::meta::key_binding;
use ghostpii_core::{ColumnKeys, Facet, LogicalType, OreParams, RootKey};
use roaring::RoaringTreemap;

use crate::clock;
use crate::error::{ApiError, ApiResult};
use crate::files::master_key::{MasterKey, WrappedKey};

/// The declared settings of a column; re-registering must repeat them exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub dtype: LogicalType,
    pub scale: u32,
    pub bounds: Option<(i64, i64)>,
    /// Sorted, without duplicates.
    pub facets: Vec<Facet>,
    /// Order domain of the `ord` facet (present exactly when the column has it).
    pub ord: Option<OreParams>,
}

impl ColumnSpec {
    pub fn has(&self, f: Facet) -> bool {
        self.facets.contains(&f)
    }

    /// The first setting in which `other` differs from `self`, described for a 409.
    pub fn difference(&self, other: &ColumnSpec) -> Option<String> {
        if self.dtype != other.dtype {
            return Some(format!(
                "dtype is {} on the keyhost, the request says {}",
                dtype_str(self.dtype),
                dtype_str(other.dtype)
            ));
        }
        if self.scale != other.scale {
            return Some(format!(
                "scale is {} on the keyhost, the request says {}",
                self.scale, other.scale
            ));
        }
        if self.bounds != other.bounds {
            return Some(format!(
                "bounds are {} on the keyhost, the request says {}",
                bounds_str(self.bounds, self.scale),
                bounds_str(other.bounds, other.scale)
            ));
        }
        if self.facets != other.facets {
            return Some(format!(
                "facets are [{}] on the keyhost, the request says [{}]",
                facets_str(&self.facets),
                facets_str(&other.facets)
            ));
        }
        if self.ord != other.ord {
            return Some(format!(
                "the ord domain is {} on the keyhost, the request says {}",
                ord_str(self.ord),
                ord_str(other.ord)
            ));
        }
        None
    }
}

pub fn dtype_str(t: LogicalType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub fn parse_dtype(s: &str) -> Option<LogicalType> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

pub fn parse_facet(s: &str) -> Option<Facet> {
    match s {
        "num" => Some(Facet::Num),
        "val" => Some(Facet::Val),
        "ord" => Some(Facet::Ord),
        "match" => Some(Facet::Match),
        "group" => Some(Facet::Group),
        "fuzzy" => Some(Facet::Fuzzy),
        "search" => Some(Facet::Search),
        _ => None,
    }
}

fn ord_str(o: Option<OreParams>) -> String {
    match o {
        Some(p) => format!("{{offset: {}, bits: {}}}", p.offset, p.bits),
        None => "none".into(),
    }
}

/// Bounds in the user's units (the stored integers divided by 10^scale).
fn bounds_str(b: Option<(i64, i64)>, scale: u32) -> String {
    use ghostpii_core::num::show_scaled;
    match b {
        Some((lo, hi)) => format!("[{}, {}]", show_scaled(lo, scale), show_scaled(hi, scale)),
        None => "none".into(),
    }
}

fn facets_str(f: &[Facet]) -> String {
    f.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ")
}

fn facet_order(f: &Facet) -> u8 {
    match f {
        Facet::Num => 0,
        Facet::Val => 1,
        Facet::Ord => 2,
        Facet::Match => 3,
        Facet::Group => 4,
        Facet::Fuzzy => 5,
        Facet::Search => 6,
    }
}

/// Sort and deduplicate facets into their canonical order.
pub fn canonical_facets(mut f: Vec<Facet>) -> Vec<Facet> {
    f.sort_by_key(facet_order);
    f.dedup();
    f
}

#[derive(Debug, Clone)]
pub struct Column {
    pub id: i64,
    pub dataset_id: i64,
    pub name: String,
    pub spec: ColumnSpec,
    pub current_epoch: u32,
    /// The registration's `meta` object (time unit and zone of datetimes).
    pub meta: Option<serde_json::Value>,
}

impl Column {
    /// How this column's logical constants map to stored integers.
    pub fn domain(&self) -> Result<crate::domain::logical::Domain, String> {
        crate::domain::logical::Domain::new(self.spec.dtype, self.spec.scale, self.meta.as_ref())
    }
}

const SELECT: &str = "SELECT id, dataset_id, name, dtype, scale, bounds_lo, bounds_hi, facets,
                      current_epoch, meta, ord_offset, ord_bits FROM columns";

fn from_row(r: &crate::store::Row) -> crate::store::Result<Column> {
    let bad = |i: usize, what: &str| {
        crate::store::Error::Conversion(format!("column {i}: stored column has an invalid {what}"))
    };
    let dtype: String = r.get(3)?;
    let lo: Option<i64> = r.get(5)?;
    let hi: Option<i64> = r.get(6)?;
    let facets: String = r.get(7)?;
    let facets = facets
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| parse_facet(s).ok_or_else(|| bad(7, "facet")))
        .collect::<crate::store::Result<Vec<_>>>()?;
    let meta: Option<String> = r.get(9)?;
    let meta = match meta {
        Some(m) => Some(serde_json::from_str(&m).map_err(|_| bad(9, "meta"))?),
        None => None,
    };
    let ord_offset: Option<i64> = r.get(10)?;
    let ord_bits: Option<u32> = r.get(11)?;
    let ord = match ord_offset.zip(ord_bits) {
        Some((o, b)) => Some(OreParams::new(o, b).map_err(|_| bad(11, "ord domain"))?),
        None => None,
    };
    Ok(Column {
        id: r.get(0)?,
        dataset_id: r.get(1)?,
        name: r.get(2)?,
        spec: ColumnSpec {
            dtype: parse_dtype(&dtype).ok_or_else(|| bad(3, "dtype"))?,
            scale: r.get(4)?,
            bounds: lo.zip(hi),
            facets,
            ord,
        },
        current_epoch: r.get(8)?,
        meta,
    })
}

pub fn find_by_name(conn: &Connection, dataset_id: i64, name: &str) -> crate::store::Result<Option<Column>> {
    conn.query_row(
        &format!("{SELECT} WHERE dataset_id = ?1 AND name = ?2"),
        params![dataset_id, name],
        from_row,
    )
    .optional()
}

pub fn find_by_id(conn: &Connection, id: i64) -> crate::store::Result<Option<Column>> {
    conn.query_row(&format!("{SELECT} WHERE id = ?1"), [id], from_row)
        .optional()
}

/// Register a new column at epoch 1 with a fresh root key, wrapped under the master key.
pub fn insert(
    conn: &Connection,
    master: &MasterKey,
    keyhost_id: &str,
    dataset_id: i64,
    name: &str,
    spec: &ColumnSpec,
    meta: Option<&serde_json::Value>,
) -> ApiResult<Column> {
    let now = clock::now_micros();
    let facets = spec.facets.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(",");
    let new_id: i64 = conn.query_row(
        "INSERT INTO columns (dataset_id, name, dtype, scale, bounds_lo, bounds_hi, facets, meta,
                              ord_offset, ord_bits, current_epoch, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 1, ?11) RETURNING id",
        params![
            dataset_id,
            name,
            dtype_str(spec.dtype),
            spec.scale,
            spec.bounds.map(|b| b.0),
            spec.bounds.map(|b| b.1),
            facets,
            meta.map(|m| m.to_string()),
            spec.ord.map(|o| o.offset),
            spec.ord.map(|o| o.bits),
            now
        ],
        crate::store::get0,
    )?;
    let column_id = new_id;
    let root = RootKey::generate();
    let wrapped = master
        .wrap(&root, keyhost_id, dataset_id, column_id, 1)
        .map_err(|e| ApiError::internal("wrapping a column key", &e))?;
    conn.execute(
        "INSERT INTO column_epochs (column_id, epoch, key_nonce, key_sealed, created_at)
         VALUES (?1, 1, ?2, ?3, ?4)",
        params![column_id, wrapped.nonce, wrapped.ciphertext, now],
    )?;
    Ok(Column {
        id: column_id,
        dataset_id,
        name: name.to_owned(),
        spec: spec.clone(),
        current_epoch: 1,
        meta: meta.cloned(),
    })
}

/// Start a new key epoch for the column: a fresh root key, wrapped under the master key,
/// becomes the current epoch (new encryptions use it); older epochs stay and still answer.
pub fn rotate(conn: &Connection, master: &MasterKey, keyhost_id: &str, col: &Column) -> ApiResult<u32> {
    let epoch = col
        .current_epoch
        .checked_add(1)
        .ok_or_else(|| ApiError::conflict("the column has run out of key epochs"))?;
    let root = RootKey::generate();
    let wrapped = master
        .wrap(&root, keyhost_id, col.dataset_id, col.id, epoch)
        .map_err(|e| ApiError::internal("wrapping a column key", &e))?;
    conn.execute(
        "INSERT INTO column_epochs (column_id, epoch, key_nonce, key_sealed, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![col.id, epoch, wrapped.nonce, wrapped.ciphertext, clock::now_micros()],
    )?;
    conn.execute(
        "UPDATE columns SET current_epoch = ?2 WHERE id = ?1",
        params![col.id, epoch],
    )?;
    Ok(epoch)
}

/// The wrapped root key of one epoch, if the epoch exists.
pub fn wrapped_key(conn: &Connection, column_id: i64, epoch: u32) -> crate::store::Result<Option<WrappedKey>> {
    conn.query_row(
        "SELECT key_nonce, key_sealed FROM column_epochs WHERE column_id = ?1 AND epoch = ?2",
        params![column_id, epoch],
        |r| {
            Ok(WrappedKey {
                nonce: r.get(0)?,
                ciphertext: r.get(1)?,
            })
        },
    )
    .optional()
}

/// Unwrap the root key of an epoch and derive its facet keys.
pub fn column_keys(
    master: &MasterKey,
    keyhost_id: &str,
    wrapped: &WrappedKey,
    dataset_id: i64,
    column_id: i64,
    epoch: u32,
) -> ApiResult<ColumnKeys> {
    let root = master
        .unwrap(wrapped, keyhost_id, dataset_id, column_id, epoch)
        .map_err(|e| ApiError::internal("unwrapping a column key", &e))?;
    Ok(root.derive(&key_binding(dataset_id, column_id, epoch)))
}

/// Record that `range` of row ids was allocated for the column.
pub fn record_rids(conn: &Connection, column_id: i64, start: u64, count: u64) -> ApiResult<()> {
    let (s, c) = (
        i64::try_from(start).map_err(|_| ApiError::invalid("rid out of range"))?,
        i64::try_from(count).map_err(|_| ApiError::invalid("rid count out of range"))?,
    );
    conn.execute(
        "INSERT INTO rid_ranges (column_id, start, count) VALUES (?1, ?2, ?3)",
        params![column_id, s, c],
    )?;
    Ok(())
}

/// The ranges of row ids allocated for the column.
pub fn rid_ranges(conn: &Connection, column_id: i64) -> crate::store::Result<Vec<RangeInclusive<u64>>> {
    let mut st = conn.prepare_cached("SELECT start, count FROM rid_ranges WHERE column_id = ?1")?;
    let rows = st.query_map([column_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (s, c) = row?;
        if s >= 1 && c >= 1 {
            let (s, c) = (s as u64, c as u64);
            out.push(s..=s + (c - 1));
        }
    }
    Ok(out)
}

/// The set of row ids allocated for the column.
pub fn allocated_set(ranges: &[RangeInclusive<u64>]) -> RoaringTreemap {
    let mut t = RoaringTreemap::new();
    for r in ranges {
        t.insert_range(r.clone());
    }
    t
}
