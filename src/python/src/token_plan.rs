//! Token planning in one call: record every comparison and match token a plan needs while
//! Python resolves the plan's schema, fetch the missing ones in ONE keyhost request through the
//! Rust resolver, cache them for the kernels, and hand them back (a distributed run ships them to
//! its workers). Python crosses into Rust once, and Rust calls back once to resolve the plan.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::errors::CiphertextError;
use crate::{equality, resolver, tokens};

/// The needs and tokens of a plan: `(compare needs, their tokens, match needs, their tokens)`.
type Planned<'py> = (
    Bound<'py, PyList>,
    Vec<Bound<'py, PyBytes>>,
    Bound<'py, PyList>,
    Vec<Bound<'py, PyBytes>>,
);

/// Resolve the plan (`resolve()`, e.g. `lf.explain`), then fetch and cache the tokens its
/// type functions recorded, from the keyhost `keyhost_id` (its active session's pool).
#[pyfunction]
pub fn plan_tokens<'py>(py: Python<'py>, keyhost_id: &str, resolve: Bound<'py, PyAny>) -> PyResult<Planned<'py>> {
    tokens::begin_scan();
    equality::begin_scan();
    let resolved = resolve.call0();
    let (needs, match_needs) = (tokens::end_scan(), equality::end_scan());
    resolved?;
    let mut foreign: Vec<&str> = needs
        .iter()
        .map(|n| n.keyhost.as_str())
        .chain(match_needs.iter().map(|n| n.keyhost.as_str()))
        .filter(|k| *k != keyhost_id)
        .collect();
    if !foreign.is_empty() {
        foreign.sort_unstable();
        foreign.dedup();
        return Err(CiphertextError::new_err(format!(
            "the query compares columns encrypted under keyhost(s) {foreign:?}, but the session is connected \
             to keyhost {keyhost_id:?}"
        )));
    }
    let mut got: Vec<Vec<u8>> = Vec::new();
    if !needs.is_empty() || !match_needs.is_empty() {
        // comparison and match tokens together: one request
        let descriptors = needs
            .iter()
            .map(tokens::descriptor)
            .chain(match_needs.iter().map(equality::descriptor))
            .collect();
        let answers = py
            .detach(|| resolver::answer_keys(keyhost_id, descriptors, &[]))
            .map_err(|r| resolver::refusal_err(py, &r))?;
        got = answers
            .iter()
            .map(|a| a.b64("token"))
            .collect::<Result<_, _>>()
            .map_err(|r| resolver::refusal_err(py, &r))?;
    }
    let match_got = got.split_off(needs.len());
    let as_bytes = |ts: &[Vec<u8>]| ts.iter().map(|t| PyBytes::new(py, t)).collect::<Vec<_>>();
    let out = (
        tokens::needs_to_py(py, &needs)?,
        as_bytes(&got),
        equality::needs_to_py(py, &match_needs)?,
        as_bytes(&match_got),
    );
    tokens::insert(&needs, got);
    equality::insert(&match_needs, match_got);
    Ok(out)
}
