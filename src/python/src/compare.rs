//! Comparison kernels over the `ord` facet: lt/le/gt/ge against constants, and bucketize.

use std::cmp::Ordering;

use ghostpii_core::meta::{ColumnMeta, Facet, LogicalType};
use ghostpii_core::{OreParams, OreToken};
use polars::prelude::*;
use polars_arrow::array::BooleanArray;
use polars_arrow::bitmap::Bitmap;
use polars_arrow::datatypes::ArrowDataType;
use rayon::prelude::*;
use serde::Deserialize;

use crate::columns::{meta_of, require_facet, EncryptedCells};
use crate::tokens::{self, Need};

/// A constant as the Python layer sends it.
#[derive(Debug, Clone, Deserialize)]
pub struct ConstSpec {
    /// "number", "date" or "datetime".
    pub kind: String,
    /// Integer value: the number, or days since 1970-01-01 for dates.
    #[serde(default)]
    pub i: Option<i64>,
    /// Float value of a number.
    #[serde(default)]
    pub f: Option<f64>,
    /// Microseconds since the epoch (datetimes, and dates as midnight).
    #[serde(default)]
    pub us: Option<i64>,
    /// How the Python user wrote it, for error messages.
    #[serde(default)]
    pub repr: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CompareKwargs {
    /// "lt", "le", "gt", "ge" or "bucketize".
    pub op: String,
    pub values: Vec<ConstSpec>,
}

#[derive(Clone, Copy)]
enum Round {
    Floor,
    Ceil,
}

/// A rational `num / den` rounded to an integer, saturating to the i64 range.
fn round_ratio(num: i128, den: i128, r: Round) -> i64 {
    let q = num.div_euclid(den);
    let q = if matches!(r, Round::Ceil) && num.rem_euclid(den) != 0 {
        q + 1
    } else {
        q
    };
    q.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn bad_type(meta: &ColumnMeta, c: &ConstSpec) -> PolarsError {
    polars_err!(InvalidOperation:
        "ghostpii: cannot compare {} column '{}' with the {} constant {}",
        format!("{:?}", meta.dtype).to_lowercase(), meta.column, c.kind, c.repr)
}

/// The stored-integer constant for `x op c`, rounded so that integer comparison is exact.
fn encode(meta: &ColumnMeta, c: &ConstSpec, r: Round) -> PolarsResult<i64> {
    use LogicalType as L;
    let scale = 10i128.pow(meta.scale);
    match (meta.dtype, c.kind.as_str()) {
        (L::Date, "date") => c.i.ok_or_else(|| bad_type(meta, c)),
        (L::Date, "datetime") => Ok(round_ratio(
            c.us.ok_or_else(|| bad_type(meta, c))? as i128,
            86_400_000_000,
            r,
        )),
        (L::Datetime, "date" | "datetime") => {
            let us = c.us.ok_or_else(|| bad_type(meta, c))? as i128;
            Ok(match meta.time_unit.as_deref() {
                Some("ns") => (us * 1000).clamp(i64::MIN as i128, i64::MAX as i128) as i64,
                Some("ms") => round_ratio(us, 1000, r),
                _ => us as i64,
            })
        }
        (L::Date | L::Datetime | L::String, _) => Err(bad_type(meta, c)),
        (_, "number") => match (c.i, c.f) {
            (Some(i), _) => Ok((i as i128 * scale).clamp(i64::MIN as i128, i64::MAX as i128) as i64),
            (None, Some(f)) if f.is_finite() => {
                // exact: f is a dyadic rational m·2^e
                let s = f * scale as f64;
                let v = match r {
                    Round::Floor => s.floor(),
                    Round::Ceil => s.ceil(),
                };
                Ok(v.clamp(i64::MIN as f64, i64::MAX as f64) as i64)
            }
            _ => Err(polars_err!(InvalidOperation: "ghostpii: constant {} is not a finite number", c.repr)),
        },
        _ => Err(bad_type(meta, c)),
    }
}

/// Rounding per operation: `x < s ⟺ x < ceil(s)`, `x ≤ s ⟺ x ≤ floor(s)`, and so on.
fn rounding(op: &str) -> PolarsResult<Round> {
    match op {
        "lt" | "ge" | "bucketize" => Ok(Round::Ceil),
        "le" | "gt" => Ok(Round::Floor),
        other => Err(polars_err!(InvalidOperation: "ghostpii: unknown comparison '{other}'")),
    }
}

/// Where a constant falls: inside the order domain (needs a token) or outside it.
enum Placed {
    Token(i64),
    Outside(Ordering),
}

struct Plan {
    meta: ColumnMeta,
    params: OreParams,
    placed: Vec<Placed>,
}

fn plan(name: &str, dtype: &DataType, kw: &CompareKwargs) -> PolarsResult<Plan> {
    let what = format!("ghost.{}()", kw.op);
    let meta = meta_of(name, dtype, &what)?;
    if !meta.has(Facet::Ord) {
        let hint = match meta.dtype {
            LogicalType::Date => "gp.date(compare=True)",
            LogicalType::Datetime => "gp.datetime(compare=True)",
            LogicalType::String => "a comparable type; text has no order facet",
            LogicalType::Float32 | LogicalType::Float64 => "gp.number(..., compare=True)",
            _ => "gp.integer(compare=True) or gp.number(..., compare=True)",
        };
        polars_bail!(InvalidOperation:
            "ghostpii: {what} needs the 'ord' facet, but column '{name}' was encrypted without it; encrypt it with {hint}");
    }
    require_facet(&meta, Facet::Ord, &what)?;
    let params = meta
        .ord
        .ok_or_else(|| polars_err!(ComputeError: "ghostpii: column '{name}' has the ord facet but no order domain"))?;
    let r = rounding(&kw.op)?;
    if kw.values.is_empty() {
        polars_bail!(InvalidOperation: "ghostpii: {what} needs at least one constant");
    }
    let mut placed = Vec::with_capacity(kw.values.len());
    for c in &kw.values {
        let v = encode(&meta, c, r)?;
        placed.push(match params.encode(v) {
            Ok(_) => Placed::Token(v),
            // constant below the domain: every value is greater than it
            Err(Ordering::Less) => Placed::Outside(Ordering::Less),
            Err(_) => Placed::Outside(Ordering::Greater),
        });
    }
    Ok(Plan { meta, params, placed })
}

fn needs(p: &Plan) -> Vec<Need> {
    p.placed
        .iter()
        .filter_map(|pl| match pl {
            Placed::Token(c) => Some(Need {
                keyhost: p.meta.keyhost.clone(),
                dataset_id: p.meta.dataset_id,
                column_id: p.meta.column_id,
                epoch: p.meta.epoch,
                constant: *c,
            }),
            Placed::Outside(_) => None,
        })
        .collect()
}

/// Output field; records the tokens the plan needs when a plan scan is active.
pub fn field(inputs: &[Field], kw: &CompareKwargs) -> PolarsResult<Field> {
    let f = inputs
        .first()
        .ok_or_else(|| polars_err!(ComputeError: "ghostpii: comparison takes one column"))?;
    let p = plan(f.name(), f.dtype(), kw)?;
    tokens::note_needs(&needs(&p));
    let dtype = if kw.op == "bucketize" {
        DataType::UInt32
    } else {
        DataType::Boolean
    };
    Ok(Field::new(f.name().clone(), dtype))
}

/// A comparator: the order of constant k against a row's cell.
enum Cmp {
    Token(Box<OreToken>),
    Outside(Ordering),
}

impl Cmp {
    #[inline]
    fn order(&self, ct: &[u8]) -> Result<Ordering, ghostpii_core::CoreError> {
        match self {
            Cmp::Token(t) => t.compare(ct),
            Cmp::Outside(o) => Ok(*o),
        }
    }
}

pub fn kernel(s: &Series, kw: &CompareKwargs) -> PolarsResult<Series> {
    let p = plan(s.name(), s.dtype(), kw)?;
    let binding = p.meta.binding();
    let wanted = needs(&p);
    let fetched = tokens::resolve(&wanted).map_err(|e| polars_err!(ComputeError: "ghostpii: {e}"))?;
    let mut fetched = fetched.into_iter();
    let mut cmps = Vec::with_capacity(p.placed.len());
    for pl in &p.placed {
        cmps.push(match pl {
            Placed::Token(_) => {
                let t = fetched
                    .next()
                    .ok_or_else(|| polars_err!(ComputeError: "ghostpii: missing token"))?;
                let tok = OreToken::parse(&t, &binding).map_err(|e| polars_err!(ComputeError: "ghostpii: {e}"))?;
                if tok.nblocks() != p.params.nblocks() {
                    polars_bail!(ComputeError: "ghostpii: token does not match the column's order domain");
                }
                Cmp::Token(Box::new(tok))
            }
            Placed::Outside(o) => Cmp::Outside(*o),
        });
    }
    let cells = EncryptedCells::from_storage(s.name(), p.meta.clone(), s.to_storage())?;
    let valid = cells.valid.downcast_as_array().values().clone();
    let ord = cells.ord.as_ref().expect("ord facet checked by plan()");
    let arr = ord.downcast_as_array();
    let n = arr.len();
    let op = kw.op.as_str();
    // one value per row (0/1 for comparisons, a bucket index for bucketize); nulls stay 0 and
    // are masked by the validity of the encrypted column
    let name = s.name();
    let row = |i: usize| -> PolarsResult<u32> {
        if !valid.get_bit(i) {
            return Ok(0);
        }
        let ct = arr.value(i);
        row_value(op, &cmps, ct)
            .map_err(|e| polars_err!(ComputeError: "ghostpii: column '{name}' is corrupt: row {i}: {e}"))
    };
    const CHUNK: usize = 1 << 14;
    let parts: PolarsResult<Vec<Vec<u32>>> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| (c * CHUNK..((c + 1) * CHUNK).min(n)).map(row).collect())
        .collect();
    let values: Vec<u32> = parts?.concat();
    let validity = (valid.unset_bits() > 0).then_some(valid);
    if op == "bucketize" {
        Ok(UInt32Chunked::from_vec_validity(s.name().clone(), values, validity).into_series())
    } else {
        let bits: Bitmap = values.iter().map(|&v| v == 1).collect();
        let arr = BooleanArray::new(ArrowDataType::Boolean, bits, validity);
        Ok(BooleanChunked::with_chunk(s.name().clone(), arr).into_series())
    }
}

/// One row's result: 0/1 for comparisons, the bucket index for bucketize.
fn row_value(op: &str, cmps: &[Cmp], ct: &[u8]) -> Result<u32, ghostpii_core::CoreError> {
    Ok(match op {
        // order of constant c against value x
        "lt" => (cmps[0].order(ct)? == Ordering::Greater) as u32,
        "le" => (cmps[0].order(ct)? != Ordering::Less) as u32,
        "gt" => (cmps[0].order(ct)? == Ordering::Less) as u32,
        "ge" => (cmps[0].order(ct)? != Ordering::Greater) as u32,
        _ => {
            // bucketize: number of breaks b with x ≥ b (breaks sorted): binary search
            let (mut lo, mut hi) = (0usize, cmps.len());
            while lo < hi {
                let mid = (lo + hi) / 2;
                if cmps[mid].order(ct)? != Ordering::Greater {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            lo as u32
        }
    })
}
