//! `ghost.similarity(constant)`: per row, the Dice (or Jaccard) similarity of a `fuzzy`
//! encoding with the encoding of a query constant.
//!
//! The constant's encoding is a token (a `search` descriptor of kind `similarity`, under a
//! `link` grant with `max_constants`), sharing the match-token cache and its fetch paths
//! (`equality.rs`): `lf.ghost.collect` prefetches it in its one request; a plain `.collect()`
//! fetches it once through the Rust resolver. The seeds that unseal the rows' encodings come in
//! one `pads` request per evaluation (the same `link` grant), as `ghost.key()` fetches its pads.

use ghostpii_core::clk::{self, Filter, Metric};
use ghostpii_core::meta::{ColumnMeta, Facet};
use ghostpii_core::RidSet;
use ghostpii_proto::descriptor::SearchKind;
use polars::prelude::*;
use rayon::prelude::*;
use serde::Deserialize;

use crate::columns::{meta_of, rids_and_binary_facet, values, FUZZY};
use crate::equality::{note, resolve, MatchNeed};

#[derive(Debug, Clone, Deserialize)]
pub struct SimilarityKwargs {
    /// The constant, normalised as the column's encodings were (the Python layer does it).
    pub constant: String,
    /// "dice" or "jaccard".
    pub metric: String,
}

struct Plan {
    meta: ColumnMeta,
    need: MatchNeed,
    metric: Metric,
}

fn plan(name: &str, dtype: &DataType, kw: &SimilarityKwargs) -> PolarsResult<Plan> {
    let what = format!("ghost.similarity({:?})", kw.constant);
    let meta = meta_of(name, dtype, &what)?;
    if !meta.has(Facet::Fuzzy) {
        polars_bail!(InvalidOperation:
            "ghostpii: {what} needs the 'fuzzy' facet, but column '{name}' was encrypted without it; encrypt it with \
             gp.text(fuzzy=True)");
    }
    if meta.fuzzy_space.is_some() {
        polars_bail!(InvalidOperation:
            "ghostpii: {what}: column '{name}' hashes its bigrams in the shared space {:?}, which the keyhost does not \
             record, so it cannot encode constants for it; compare columns encrypted without fuzzy_space",
            meta.fuzzy_space.as_deref().unwrap_or_default());
    }
    if kw.constant.is_empty() {
        polars_bail!(InvalidOperation: "ghostpii: ghost.similarity needs a non-empty constant");
    }
    let metric = Metric::parse(&kw.metric).ok_or_else(
        || polars_err!(InvalidOperation: "ghostpii: metric must be 'dice' or 'jaccard', got {:?}", kw.metric),
    )?;
    let need = MatchNeed::text(&meta, &kw.constant, SearchKind::Similarity, 0);
    Ok(Plan { meta, need, metric })
}

pub fn field(inputs: &[Field], kw: &SimilarityKwargs) -> PolarsResult<Field> {
    let f = inputs
        .first()
        .ok_or_else(|| polars_err!(ComputeError: "ghostpii: ghost.similarity takes one column"))?;
    let p = plan(f.name(), f.dtype(), kw)?;
    note(std::slice::from_ref(&p.need));
    Ok(Field::new(f.name().clone(), DataType::Float64))
}

pub fn kernel(s: &Series, kw: &SimilarityKwargs) -> PolarsResult<Series> {
    let p = plan(s.name(), s.dtype(), kw)?;
    let err = |e: String| polars_err!(ComputeError: "ghostpii: {e}");
    let t = resolve(std::slice::from_ref(&p.need)).map_err(err)?;
    let c: Filter = clk::from_bytes(&t[0]).ok_or_else(|| err("the similarity token is not an encoding".into()))?;
    let wc = clk::weight(&c);
    let (rid, cells, valid) = rids_and_binary_facet(s, FUZZY)?;
    let cells = cells.downcast_as_array();
    let rids = values(&rid);
    let mut wanted: Vec<u64> = (0..rids.len()).filter(|&i| valid.get_bit(i)).map(|i| rids[i]).collect();
    wanted.par_sort_unstable();
    wanted.dedup();
    let seeds = if wanted.is_empty() {
        Vec::new()
    } else {
        crate::pseudonyms::fetch_pads(&p.meta, Facet::Fuzzy, &RidSet::from_sorted(&wanted)).map_err(err)?
    };
    if seeds.len() != 16 * wanted.len() {
        return Err(err(format!(
            "the keyhost returned {} bytes of seeds for {} rows of column '{}'",
            seeds.len(),
            wanted.len(),
            p.meta.column
        )));
    }
    let out: Vec<Option<f64>> = (0..rids.len())
        .into_par_iter()
        .with_min_len(1 << 10)
        .map(|i| {
            if !valid.get_bit(i) {
                return Ok(None);
            }
            let j = wanted.binary_search(&rids[i]).expect("every valid rid was requested");
            let seed: [u8; 16] = seeds[16 * j..16 * j + 16].try_into().expect("16 bytes");
            let f = clk::unseal(cells.value(i), &seed)
                .ok_or_else(|| err(format!("column '{}': row {i} is corrupt", p.meta.column)))?;
            Ok(Some(clk::score(&f, clk::weight(&f), &c, wc, p.metric)))
        })
        .collect::<PolarsResult<_>>()?;
    Ok(Float64Chunked::from_iter_options(s.name().clone(), out.into_iter()).into_series())
}
