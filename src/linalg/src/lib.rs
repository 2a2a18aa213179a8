//! Small dense linear algebra of ghostpii's model fits, on smartcore: solves of the revealed
//! `(d+1)×(d+1)` normal equations (Cholesky, SVD fallback), symmetric eigenvalues for the
//! eigenvalue floor and AdaSSP's ridge choice, and the PASS-GLM quadratic approximation of the
//! logistic log-likelihood. Nothing here sees rows: inputs are revealed aggregates.

use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linalg::traits::cholesky::CholeskyDecomposable;
use smartcore::linalg::traits::evd::EVDDecomposable;

/// Why a system could not be solved.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LinalgError {
    #[error("the matrix is not square or does not match the right-hand side")]
    Shape,
    #[error("the system is singular or not positive definite (smallest eigenvalue {min_eigenvalue:e} of {scale:e})")]
    Singular { min_eigenvalue: f64, scale: f64 },
    #[error("the input holds a value that is not finite")]
    NotFinite,
    #[error("linear algebra failed: {0}")]
    Failed(String),
}

pub type Result<T> = std::result::Result<T, LinalgError>;

fn dense(a: &[Vec<f64>]) -> Result<DenseMatrix<f64>> {
    let n = a.len();
    if n == 0 || a.iter().any(|r| r.len() != n) {
        return Err(LinalgError::Shape);
    }
    if a.iter().flatten().any(|x| !x.is_finite()) {
        return Err(LinalgError::NotFinite);
    }
    DenseMatrix::from_2d_vec(&a.to_vec()).map_err(|e| LinalgError::Failed(e.to_string()))
}

/// Eigenvalues of the symmetric matrix `a`, ascending.
pub fn eigenvalues(a: &[Vec<f64>]) -> Result<Vec<f64>> {
    let m = dense(a)?;
    let evd = m.evd(true).map_err(|e| LinalgError::Failed(e.to_string()))?;
    let mut d = evd.d;
    d.sort_by(f64::total_cmp);
    Ok(d)
}

/// Eigen-decomposition `a = V diag(d) Vᵀ` of a symmetric matrix: (eigenvalues, V by columns).
fn eigen(a: &[Vec<f64>]) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    let m = dense(a)?;
    let n = a.len();
    let evd = m.evd(true).map_err(|e| LinalgError::Failed(e.to_string()))?;
    let v: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| *evd.V.get((i, j))).collect()).collect();
    Ok((evd.d, v))
}

/// `a` with its eigenvalues raised to at least `floor` (a symmetric positive definite
/// matrix nearest `a` in that sense): how a noisy Gram matrix is made well-posed.
pub fn eigen_floor(a: &[Vec<f64>], floor: f64) -> Result<Vec<Vec<f64>>> {
    let (d, v) = eigen(a)?;
    let n = a.len();
    let mut out = vec![vec![0.0; n]; n];
    for (k, &lambda) in d.iter().enumerate() {
        let l = lambda.max(floor);
        for i in 0..n {
            for j in 0..n {
                out[i][j] += l * v[i][k] * v[j][k];
            }
        }
    }
    Ok(out)
}

/// Solve `a x = b` for symmetric positive definite `a` by Cholesky (smartcore). Refuses a
/// singular or indefinite `a` (relative smallest eigenvalue below `1e-12`) with its
/// eigenvalues named, rather than returning an unstable answer.
pub fn solve_spd(a: &[Vec<f64>], b: &[f64]) -> Result<Vec<f64>> {
    let n = a.len();
    if b.len() != n {
        return Err(LinalgError::Shape);
    }
    if b.iter().any(|x| !x.is_finite()) {
        return Err(LinalgError::NotFinite);
    }
    let ev = eigenvalues(a)?;
    let scale = ev.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let min = ev[0];
    if min.is_nan() || min <= scale * 1e-12 {
        return Err(LinalgError::Singular {
            min_eigenvalue: min,
            scale,
        });
    }
    let m = dense(a)?;
    let rhs = DenseMatrix::from_2d_vec(&b.iter().map(|&x| vec![x]).collect())
        .map_err(|e| LinalgError::Failed(e.to_string()))?;
    let x = m.cholesky_solve_mut(rhs).map_err(|_| LinalgError::Singular {
        min_eigenvalue: min,
        scale,
    })?;
    let out: Vec<f64> = (0..n).map(|i| *x.get((i, 0))).collect();
    if out.iter().any(|v| !v.is_finite()) {
        return Err(LinalgError::NotFinite);
    }
    Ok(out)
}

/// The AdaSSP ridge (Wang 2018, Alg. 2) for a Gram matrix `xtx` perturbed with Gaussian noise
/// of standard deviation `sigma` per entry (in the units of `xtx`): with `t` the
/// high-probability bound `σ·√(d·ln(2d²/ρ))` on the noise's spectral norm,
/// `λ = max(0, t − λ_min(X̂ᵀX̂))` — Wang's choice with λ_min estimated from the noisy matrix
/// itself (post-processing: costs no privacy budget) — plus, where `X̂ᵀX̂ + λI` would still
/// not be positive definite, the eigenvalue floor that makes it so. `rho` is the failure
/// probability of the bound.
pub fn adassp_lambda(xtx: &[Vec<f64>], sigma: f64, rho: f64) -> Result<f64> {
    let d = xtx.len() as f64;
    let ev = eigenvalues(xtx)?;
    let t = sigma * (d * (2.0 * d * d / rho).ln()).sqrt();
    let scale = ev.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    let lambda = (t - ev[0]).max(0.0);
    // never NaN, never a singular system: at least 1e-9 of the scale above zero
    Ok(lambda.max(scale * 1e-9 - ev[0]).max(0.0))
}

/// PASS-GLM (Huggins, Adams, Broderick 2017): the degree-2 Chebyshev approximation
/// `b0 + b1·s + b2·s²` of the logistic log-likelihood `φ(s) = −ln(1 + e^{−s})` on `[−r, r]`.
pub fn pass_glm_coefficients(r: f64) -> [f64; 3] {
    // Chebyshev coefficients c_k = (2/N) Σ φ(r cos θ_m) cos(k θ_m) at N nodes
    let n = 64;
    let phi = |s: f64| -(1.0 + (-s).exp()).ln();
    let mut c = [0.0f64; 3];
    for m in 0..n {
        let th = std::f64::consts::PI * (m as f64 + 0.5) / n as f64;
        let f = phi(r * th.cos());
        for (k, ck) in c.iter_mut().enumerate() {
            *ck += 2.0 / n as f64 * f * (k as f64 * th).cos();
        }
    }
    // p(s) = c0/2 + c1·T1(s/r) + c2·T2(s/r), T2(u) = 2u² − 1
    [c[0] / 2.0 - c[2], c[1] / r, 2.0 * c[2] / (r * r)]
}

/// Smallest eigenvalue, for error messages and conditioning checks.
pub fn min_eigenvalue(a: &[Vec<f64>]) -> Result<f64> {
    Ok(eigenvalues(a)?[0])
}

#[cfg(test)]
mod tests;
