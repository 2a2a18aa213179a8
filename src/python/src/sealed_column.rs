//! The `ghostpii.sealed` struct column, format 2 (`ghostpii_core::sealed_format`): building one
//! from sealed values, and reading one back (format 1, `{label, payload}` with a JSON payload,
//! is still read).

use ghostpii_core::meta::ColumnMeta;
use ghostpii_core::sealed::{SealedAggregate, SealedOp};
use ghostpii_core::sealed_format::{
    self as fmt, parse_op, unpack_masked, unpack_repeats, unpack_terms, SealedTerm, SEALED_FORMAT,
};
use polars::prelude::*;

/// The field names and types of the storage struct, in order.
pub fn sealed_storage_dtype() -> DataType {
    DataType::Struct(vec![
        Field::new("label".into(), DataType::String),
        Field::new("format".into(), DataType::UInt8),
        Field::new("op".into(), DataType::String),
        Field::new("meta".into(), DataType::String),
        Field::new("terms".into(), DataType::Binary),
        Field::new("masked".into(), DataType::Binary),
        Field::new("n".into(), DataType::UInt64),
        Field::new("rids".into(), DataType::Binary),
        Field::new("repeats".into(), DataType::Binary),
        Field::new("params".into(), DataType::Binary),
    ])
}

/// One sealed value to write.
pub struct NewSealed<'a> {
    pub label: String,
    pub op: SealedOp,
    pub meta_json: &'a str,
    pub terms: Vec<u8>,
    pub masked: Vec<u8>,
    pub n: u64,
    pub rids: Vec<u8>,
    pub repeats: Vec<u8>,
    pub params: Vec<u8>,
}

/// A sealed column of many values (`None`: a null value), written column-wise.
pub fn many_rows(name: PlSmallStr, rows: Vec<Option<NewSealed<'_>>>) -> PolarsResult<Series> {
    let n = rows.len();
    let get = |f: &dyn Fn(&NewSealed<'_>) -> Option<Vec<u8>>| -> Vec<Option<Vec<u8>>> {
        rows.iter().map(|r| r.as_ref().and_then(f)).collect()
    };
    let fields = [
        Series::new(
            "label".into(),
            rows.iter()
                .map(|r| r.as_ref().map(|r| r.label.as_str()))
                .collect::<Vec<_>>(),
        ),
        Series::new(
            "format".into(),
            rows.iter()
                .map(|r| r.as_ref().map(|_| SEALED_FORMAT))
                .collect::<Vec<_>>(),
        ),
        Series::new(
            "op".into(),
            rows.iter()
                .map(|r| r.as_ref().map(|r| r.op.as_str()))
                .collect::<Vec<_>>(),
        ),
        Series::new(
            "meta".into(),
            rows.iter().map(|r| r.as_ref().map(|r| r.meta_json)).collect::<Vec<_>>(),
        ),
        Series::new("terms".into(), get(&|r| Some(r.terms.clone()))),
        Series::new("masked".into(), get(&|r| Some(r.masked.clone()))),
        Series::new(
            "n".into(),
            rows.iter().map(|r| r.as_ref().map(|r| r.n)).collect::<Vec<_>>(),
        ),
        Series::new("rids".into(), get(&|r| Some(r.rids.clone()))),
        Series::new("repeats".into(), get(&|r| Some(r.repeats.clone()))),
        Series::new("params".into(), get(&|r| Some(r.params.clone()))),
    ];
    let ca = StructChunked::from_series(name, n, fields.iter())?;
    let validity: polars_arrow::bitmap::Bitmap = rows.iter().map(Option::is_some).collect();
    Ok(ca.with_outer_validity(Some(validity)).into_series())
}

/// A one-row sealed value of an op whose layout lives in `params` (a Gram matrix: op `gram`,
/// `params` = the JSON of `ghostpii_core::sealed_gram::SealedGram`; no `masked`, `rids` or
/// `terms` fields, those are inside).
pub fn params_row(name: PlSmallStr, label: String, op: &str, n: u64, params: Vec<u8>) -> PolarsResult<Series> {
    let empty: Vec<u8> = Vec::new();
    let fields = [
        Series::new("label".into(), [label]),
        Series::new("format".into(), [SEALED_FORMAT]),
        Series::new("op".into(), [op]),
        Series::new("meta".into(), [""]),
        Series::new("terms".into(), [empty.clone()]),
        Series::new("masked".into(), [empty.clone()]),
        Series::new("n".into(), [n]),
        Series::new("rids".into(), [empty.clone()]),
        Series::new("repeats".into(), [empty]),
        Series::new("params".into(), [params]),
    ];
    Ok(StructChunked::from_series(name, 1, fields.iter())?.into_series())
}

/// A one-row null sealed value.
pub fn null_row(name: PlSmallStr) -> Series {
    Series::full_null(name, 1, &sealed_storage_dtype())
}

/// One sealed value read back.
#[derive(Debug, Clone)]
pub struct Row {
    pub op: SealedOp,
    /// Index into [`SealedColumn::metas`].
    pub meta: usize,
    pub terms: Vec<SealedTerm>,
    pub masked: Vec<u128>,
    pub n: u64,
    pub rids: Vec<u8>,
    pub repeats: Vec<(u64, Vec<u8>)>,
    pub params: Vec<u8>,
    /// Format 1 values keep their expression (format 2 derives it from the metadata).
    pub expression: Option<String>,
}

/// The sealed values of a column, with their distinct column metadata decoded once.
pub struct SealedColumn {
    pub metas: Vec<ColumnMeta>,
    pub meta_json: Vec<String>,
    pub rows: Vec<Option<Row>>,
}

fn corrupt(name: &str, what: impl std::fmt::Display) -> PolarsError {
    polars_err!(ComputeError: "ghostpii: column '{name}' holds a corrupt sealed value: {what}")
}

impl SealedColumn {
    pub fn read(s: &Series) -> PolarsResult<Self> {
        let name = s.name().as_str();
        let storage = s.to_storage().rechunk();
        let st = storage
            .struct_()
            .map_err(|_| corrupt(name, "its storage is not a struct"))?;
        let field = |n: &str| {
            st.field_by_name(n)
                .map_err(|_| corrupt(name, format!("field '{n}' is missing")))
        };
        if st.field_by_name("format").is_err() {
            return Self::read_v1(name, &storage, &field("payload")?);
        }
        let valid = storage.is_not_null();
        let (format, op, meta) = (field("format")?, field("op")?, field("meta")?);
        let (terms, masked, n) = (field("terms")?, field("masked")?, field("n")?);
        let (rids, repeats, params) = (field("rids")?, field("repeats")?, field("params")?);
        let (format, op, meta) = (format.u8()?, op.str()?, meta.str()?);
        let (terms, masked, n) = (terms.binary()?, masked.binary()?, n.u64()?);
        let (rids, repeats, params) = (rids.binary()?, repeats.binary()?, params.binary()?);
        let mut out = SealedColumn {
            metas: Vec::new(),
            meta_json: Vec::new(),
            rows: Vec::with_capacity(s.len()),
        };
        let err = |e: ghostpii_core::CoreError| corrupt(name, e);
        for i in 0..s.len() {
            if !valid.get(i).unwrap_or(false) {
                out.rows.push(None);
                continue;
            }
            let f = format.get(i).unwrap_or(0);
            if f != SEALED_FORMAT {
                return Err(corrupt(
                    name,
                    format!("format {f} is not supported (this build reads formats 1 and {SEALED_FORMAT})"),
                ));
            }
            let m = meta.get(i).ok_or_else(|| corrupt(name, "no column metadata"))?;
            let meta_idx = out.meta_index(m).map_err(err)?;
            out.rows.push(Some(Row {
                op: parse_op(op.get(i).unwrap_or("")).map_err(err)?,
                meta: meta_idx,
                terms: unpack_terms(terms.get(i).unwrap_or(&[])).map_err(err)?,
                masked: unpack_masked(masked.get(i).unwrap_or(&[])).map_err(err)?,
                n: n.get(i).unwrap_or(0),
                rids: rids.get(i).unwrap_or(&[]).to_vec(),
                repeats: unpack_repeats(repeats.get(i).unwrap_or(&[])).map_err(err)?,
                params: params.get(i).unwrap_or(&[]).to_vec(),
                expression: None,
            }));
        }
        Ok(out)
    }

    /// Index of the metadata `json`, decoded on its first occurrence (rows of one column share it).
    fn meta_index(&mut self, json: &str) -> ghostpii_core::error::Result<usize> {
        if let Some(i) = self
            .meta_json
            .last()
            .filter(|m| m.as_str() == json)
            .map(|_| self.metas.len() - 1)
        {
            return Ok(i);
        }
        if let Some(i) = self.meta_json.iter().position(|m| m == json) {
            return Ok(i);
        }
        self.metas.push(ColumnMeta::from_json(json)?);
        self.meta_json.push(json.to_owned());
        Ok(self.metas.len() - 1)
    }

    /// Format 1: `{label, payload}` with the JSON of `SealedAggregate`.
    fn read_v1(name: &str, storage: &Series, payload: &Series) -> PolarsResult<Self> {
        let payload = payload.binary()?;
        let valid = storage.is_not_null();
        let mut out = SealedColumn {
            metas: Vec::new(),
            meta_json: Vec::new(),
            rows: Vec::with_capacity(storage.len()),
        };
        for i in 0..storage.len() {
            let raw = match (valid.get(i), payload.get(i)) {
                (Some(true), Some(raw)) => raw,
                _ => {
                    out.rows.push(None);
                    continue;
                }
            };
            let v1 = SealedAggregate::from_bytes(raw).map_err(|e| corrupt(name, e))?;
            let parts = fmt::SealedParts::from_v1(&v1).map_err(|e| corrupt(name, e))?;
            let meta = out.meta_index(&v1.meta.to_json()).map_err(|e| corrupt(name, e))?;
            out.rows.push(Some(Row {
                op: parts.op,
                meta,
                terms: parts.terms,
                masked: parts.masked,
                n: parts.n,
                rids: parts.rids,
                repeats: parts.repeats,
                params: parts.params,
                expression: Some(parts.expression),
            }));
        }
        Ok(out)
    }

    /// A row as `SealedParts` (for merging).
    pub fn parts(&self, row: &Row) -> fmt::SealedParts {
        let meta = self.metas[row.meta].clone();
        let expression = row.expression.clone().unwrap_or_else(|| meta.column.clone());
        fmt::SealedParts {
            op: row.op,
            meta,
            terms: row.terms.clone(),
            masked: row.masked.clone(),
            n: row.n,
            rids: row.rids.clone(),
            repeats: row.repeats.clone(),
            params: row.params.clone(),
            expression,
        }
    }
}
