//! Thin `#[polars_expr]` wrappers: validate dtypes when the plan is built, call the kernels.

use ghostpii_core::meta::SEALED_ROWS_EXT_NAME;
use polars::prelude::*;
use polars_core::datatypes::extension::get_extension_type_or_generic;
use polars_core::datatypes::ExtensionTypeInstance;
use pyo3_polars::derive::polars_expr;

use crate::aggregate;
use crate::columns::meta_of;
use crate::compare::{self, CompareKwargs};

fn first<'a, T>(inputs: &'a [T], what: &str) -> PolarsResult<&'a T> {
    inputs
        .first()
        .ok_or_else(|| polars_err!(ComputeError: "ghostpii: {what} takes one column"))
}

fn count_field(inputs: &[Field]) -> PolarsResult<Field> {
    let f = first(inputs, "count")?;
    meta_of(f.name(), f.dtype(), "ghost.count()")?;
    Ok(Field::new(f.name().clone(), DataType::UInt32))
}

#[polars_expr(output_type_func=count_field)]
fn ghost_count(inputs: &[Series]) -> PolarsResult<Series> {
    aggregate::count(first(inputs, "count")?)
}

fn rows_dtype(name: &str, dtype: &DataType) -> PolarsResult<DataType> {
    let (typ, storage) = rows_ext(name, dtype)?;
    Ok(DataType::Extension(typ, Box::new(storage)))
}

fn rows_ext(name: &str, dtype: &DataType) -> PolarsResult<(ExtensionTypeInstance, DataType)> {
    let meta = meta_of(name, dtype, "ghost.decrypt()")?;
    let storage = dtype.to_storage();
    let typ = get_extension_type_or_generic(SEALED_ROWS_EXT_NAME, &storage, Some(&meta.to_json()));
    Ok((typ, storage))
}

fn decrypt_field(inputs: &[Field]) -> PolarsResult<Field> {
    let f = first(inputs, "decrypt")?;
    Ok(Field::new(f.name().clone(), rows_dtype(f.name(), f.dtype())?))
}

/// Per-row decryption is sealed too: this marks the rows; `reveal` fetches their keys.
#[polars_expr(output_type_func=decrypt_field)]
fn ghost_decrypt(inputs: &[Series]) -> PolarsResult<Series> {
    let s = first(inputs, "decrypt")?;
    let (typ, _) = rows_ext(s.name(), s.dtype())?;
    Ok(s.to_storage().clone().into_extension(typ))
}

fn compare_field(inputs: &[Field], kwargs: CompareKwargs) -> PolarsResult<Field> {
    compare::field(inputs, &kwargs)
}

/// `lt/le/gt/ge` against a constant, or `bucketize` against sorted breaks, on the `ord` facet.
#[polars_expr(output_type_func_with_kwargs=compare_field)]
fn ghost_compare(inputs: &[Series], kwargs: CompareKwargs) -> PolarsResult<Series> {
    compare::kernel(first(inputs, "comparison")?, &kwargs)
}

fn match_field(inputs: &[Field], kwargs: crate::equality::MatchKwargs) -> PolarsResult<Field> {
    crate::equality::field(inputs, &kwargs)
}

/// `eq` / `is_in` against constants, on the `match` facet (match tokens from the keyhost).
#[polars_expr(output_type_func_with_kwargs=match_field)]
fn ghost_match(inputs: &[Series], kwargs: crate::equality::MatchKwargs) -> PolarsResult<Series> {
    crate::equality::kernel(first(inputs, "ghost.eq")?, &kwargs)
}

fn search_field(inputs: &[Field], kwargs: crate::search::SearchKwargs) -> PolarsResult<Field> {
    crate::search::field(inputs, &kwargs)
}

/// `starts_with` / `ends_with` / `contains` against constants, on the `search` facet.
#[polars_expr(output_type_func_with_kwargs=search_field)]
fn ghost_search(inputs: &[Series], kwargs: crate::search::SearchKwargs) -> PolarsResult<Series> {
    crate::search::kernel(first(inputs, "ghost.contains")?, &kwargs)
}

fn similarity_field(inputs: &[Field], kwargs: crate::fuzzy_query::SimilarityKwargs) -> PolarsResult<Field> {
    crate::fuzzy_query::field(inputs, &kwargs)
}

/// Similarity of each row's `fuzzy` encoding with a query constant's (a similarity token).
#[polars_expr(output_type_func_with_kwargs=similarity_field)]
fn ghost_similarity(inputs: &[Series], kwargs: crate::fuzzy_query::SimilarityKwargs) -> PolarsResult<Series> {
    crate::fuzzy_query::kernel(first(inputs, "ghost.similarity")?, &kwargs)
}

fn key_field(inputs: &[Field]) -> PolarsResult<Field> {
    crate::pseudonyms::field(inputs)
}

/// Pseudonymous keys of the `group` facet (pads for the rows, in one keyhost request).
#[polars_expr(output_type_func=key_field)]
fn ghost_key(inputs: &[Series]) -> PolarsResult<Series> {
    crate::pseudonyms::kernel(first(inputs, "ghost.key")?)
}
