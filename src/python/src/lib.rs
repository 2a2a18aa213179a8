//! The Polars plugin and Python bindings of ghostpii, compiled into one `_internal` module.
//!
//! Plugin kernels (`expressions`) hold no keys and reveal nothing. Answer keys are resolved
//! before the kernels (`lf.ghost.collect` prefetches tokens) and after them (`gp.reveal`); a
//! kernel that still misses tokens or pads (a plain `.collect()`, `ghost.key()`) asks through
//! the Rust resolver (`resolver`), one batched request for all it misses.

mod aggregate;
mod columns;
mod compare;
mod decrypt;
mod deg2;
mod encrypt;
mod equality;
mod errors;
mod expressions;
mod fhe_client;
mod frames;
mod fuzzy_query;
mod grouped;
mod key_facets;
mod keyhost;
mod linalg;
mod linkage;
mod merge;
mod moments;
mod pseudonyms;
mod quantile;
mod resolver;
mod reveal;
mod score;
mod sealed_column;
mod search;
mod token_plan;
mod tokens;

use pyo3::prelude::*;

#[pymodule]
fn _internal(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    m.add_function(wrap_pyfunction!(encrypt::encrypt_column, m)?)?;
    m.add_function(wrap_pyfunction!(decrypt::open_rows, m)?)?;
    m.add_function(wrap_pyfunction!(decrypt::pending_rids, m)?)?;
    m.add_function(wrap_pyfunction!(keyhost::serve_keyhost, m)?)?;
    m.add_function(wrap_pyfunction!(keyhost::verify_audit_db, m)?)?;
    m.add_function(wrap_pyfunction!(keyhost::verify_audit_db_with_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(keyhost::checkpoint_public_key, m)?)?;
    m.add_function(wrap_pyfunction!(token_plan::plan_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(tokens::insert_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(tokens::clear_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(deg2::encrypt_products, m)?)?;
    linalg::register(m)?;
    m.add_function(wrap_pyfunction!(equality::insert_match_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(equality::clear_match_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(pseudonyms::install_shipped_pads, m)?)?;
    m.add_function(wrap_pyfunction!(pseudonyms::clear_shipped_pads, m)?)?;
    m.add_function(wrap_pyfunction!(pseudonyms::key_rids, m)?)?;
    m.add_function(wrap_pyfunction!(pseudonyms::slice_pads, m)?)?;
    m.add_function(wrap_pyfunction!(linkage::fuzzy_rids, m)?)?;
    m.add_function(wrap_pyfunction!(linkage::link_encrypted, m)?)?;
    m.add_function(wrap_pyfunction!(linkage::link_plaintext, m)?)?;
    m.add_function(wrap_pyfunction!(linkage::similarity_encrypted, m)?)?;
    m.add_function(wrap_pyfunction!(linkage::link_fields_encrypted, m)?)?;
    m.add_function(wrap_pyfunction!(linkage::fuzzy_encodings, m)?)?;
    m.add_function(wrap_pyfunction!(linkage::similarity_plaintext, m)?)?;
    m.add_class::<keyhost::LocalKeyhost>()?;
    m.add_class::<resolver::KeyhostClient>()?;
    m.add_function(wrap_pyfunction!(resolver::error_class, m)?)?;
    m.add_function(wrap_pyfunction!(frames::frame_decode, m)?)?;
    m.add_function(wrap_pyfunction!(frames::frame_encode, m)?)?;
    m.add_class::<reveal::RevealPlan>()?;
    m.add_function(wrap_pyfunction!(reveal::sealed_descriptors, m)?)?;
    m.add_class::<score::ScoreRows>()?;
    m.add_class::<fhe_client::FheClient>()?;
    m.add_function(wrap_pyfunction!(fhe_client::circuit_bits, m)?)?;
    m.add_class::<quantile::QuantileSearch>()?;
    Ok(())
}
