//! Python bindings of `ghostpii-linalg` (smartcore): solves of revealed normal equations,
//! eigenvalues, AdaSSP's ridge, PASS-GLM coefficients. Inputs are revealed aggregates only.

use ghostpii_linalg as la;
use pyo3::prelude::*;

use crate::errors::GhostError;

fn err(e: la::LinalgError) -> PyErr {
    GhostError::new_err(e.to_string())
}

/// Solve `a x = b` (symmetric positive definite `a`, Cholesky). Raises `GhostError` whose
/// message starts with "the system is singular" for a singular or indefinite `a`.
#[pyfunction]
fn solve_spd(py: Python<'_>, a: Vec<Vec<f64>>, b: Vec<f64>) -> PyResult<Vec<f64>> {
    py.detach(|| la::solve_spd(&a, &b)).map_err(err)
}

/// Eigenvalues of a symmetric matrix, ascending.
#[pyfunction]
fn eigenvalues(py: Python<'_>, a: Vec<Vec<f64>>) -> PyResult<Vec<f64>> {
    py.detach(|| la::eigenvalues(&a)).map_err(err)
}

/// `a` with its eigenvalues raised to at least `floor`.
#[pyfunction]
fn eigen_floor(py: Python<'_>, a: Vec<Vec<f64>>, floor: f64) -> PyResult<Vec<Vec<f64>>> {
    py.detach(|| la::eigen_floor(&a, floor)).map_err(err)
}

/// AdaSSP's ridge for a Gram matrix perturbed with per-entry noise `sigma`.
#[pyfunction]
fn adassp_lambda(py: Python<'_>, xtx: Vec<Vec<f64>>, sigma: f64, rho: f64) -> PyResult<f64> {
    py.detach(|| la::adassp_lambda(&xtx, sigma, rho)).map_err(err)
}

/// `(b0, b1, b2)` of the PASS-GLM quadratic approximation of `−ln(1 + e^{−s})` on `[−r, r]`.
#[pyfunction]
fn pass_glm_coefficients(r: f64) -> (f64, f64, f64) {
    let [a, b, c] = la::pass_glm_coefficients(r);
    (a, b, c)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(solve_spd, m)?)?;
    m.add_function(wrap_pyfunction!(eigenvalues, m)?)?;
    m.add_function(wrap_pyfunction!(eigen_floor, m)?)?;
    m.add_function(wrap_pyfunction!(adassp_lambda, m)?)?;
    m.add_function(wrap_pyfunction!(pass_glm_coefficients, m)?)?;
    Ok(())
}
