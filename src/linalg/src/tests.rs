use super::*;
use smartcore::linalg::basic::arrays::Array;
use smartcore::linear::linear_regression::{LinearRegression, LinearRegressionParameters, LinearRegressionSolverName};
use smartcore::linear::ridge_regression::{RidgeRegression, RidgeRegressionParameters, RidgeRegressionSolverName};

/// A deterministic design: n rows of d features and a noisy linear target.
fn data(n: usize, d: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut s = 12345u64;
    let mut r = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    };
    let x: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..d).map(|j| r() * (j + 1) as f64 * 10.0 + j as f64).collect())
        .collect();
    let y = x
        .iter()
        .map(|row| 3.0 + row.iter().enumerate().map(|(j, v)| (j as f64 - 1.5) * v).sum::<f64>() + r())
        .collect();
    (x, y)
}

/// The Gram matrix [1 X]ᵀ[1 X] and [1 X]ᵀy, as ghostpii reveals them.
fn gram(x: &[Vec<f64>], y: &[f64]) -> (Vec<Vec<f64>>, Vec<f64>) {
    let d = x[0].len() + 1;
    let mut g = vec![vec![0.0; d]; d];
    let mut b = vec![0.0; d];
    for (row, &t) in x.iter().zip(y) {
        let v: Vec<f64> = std::iter::once(1.0).chain(row.iter().copied()).collect();
        for i in 0..d {
            b[i] += v[i] * t;
            for j in 0..d {
                g[i][j] += v[i] * v[j];
            }
        }
    }
    (g, b)
}

#[test]
fn normal_equations_match_smartcore_least_squares_on_the_plaintext() {
    let (x, y) = data(500, 4);
    let (g, b) = gram(&x, &y);
    let beta = solve_spd(&g, &b).unwrap();
    let xm = DenseMatrix::from_2d_vec(&x).unwrap();
    let fit = LinearRegression::fit(
        &xm,
        &y,
        LinearRegressionParameters::default().with_solver(LinearRegressionSolverName::SVD),
    )
    .unwrap();
    assert!(
        (beta[0] - fit.intercept()).abs() < 1e-8 * fit.intercept().abs().max(1.0),
        "{beta:?}"
    );
    for j in 0..4 {
        let c = *fit.coefficients().get((j, 0));
        assert!(
            (beta[j + 1] - c).abs() < 1e-8 * c.abs().max(1.0),
            "coef {j}: {} vs {c}",
            beta[j + 1]
        );
    }
}

#[test]
fn ridge_normal_equations_match_smartcore_ridge() {
    let (x, y) = data(300, 3);
    // smartcore's ridge without normalisation solves (XᵀX + αI) w = Xᵀy (no intercept): the
    // same system from the Gram matrix without its intercept row and column
    let (g, b) = gram(&x, &y);
    let d = 3;
    let alpha = 50.0;
    let mut c = vec![vec![0.0; d]; d];
    let mut r = vec![0.0; d];
    for i in 0..d {
        r[i] = b[i + 1];
        for j in 0..d {
            c[i][j] = g[i + 1][j + 1];
        }
        c[i][i] += alpha;
    }
    let beta = solve_spd(&c, &r).unwrap();
    let xm = DenseMatrix::from_2d_vec(&x).unwrap();
    let fit = RidgeRegression::fit(
        &xm,
        &y,
        RidgeRegressionParameters::default()
            .with_alpha(alpha)
            .with_normalize(false)
            .with_solver(RidgeRegressionSolverName::Cholesky),
    )
    .unwrap();
    for (j, b) in beta.iter().enumerate() {
        let want = *fit.coefficients().get((j, 0));
        assert!((b - want).abs() < 1e-8 * want.abs().max(1.0), "coef {j}: {b} vs {want}");
    }
}

#[test]
fn singular_systems_are_refused_not_answered() {
    let g = vec![vec![1.0, 2.0], vec![2.0, 4.0]];
    assert!(matches!(solve_spd(&g, &[1.0, 2.0]), Err(LinalgError::Singular { .. })));
    let indefinite = vec![vec![1.0, 0.0], vec![0.0, -1.0]];
    assert!(matches!(
        solve_spd(&indefinite, &[1.0, 1.0]),
        Err(LinalgError::Singular { .. })
    ));
    assert_eq!(solve_spd(&[vec![f64::NAN]], &[1.0]), Err(LinalgError::NotFinite));
    assert_eq!(solve_spd(&[vec![1.0, 2.0]], &[1.0]), Err(LinalgError::Shape));
}

#[test]
fn the_eigenvalue_floor_makes_a_noisy_gram_positive_definite() {
    let g = vec![vec![1.0, 2.0], vec![2.0, 1.0]]; // eigenvalues 3, −1
    let f = eigen_floor(&g, 0.5).unwrap();
    let ev = eigenvalues(&f).unwrap();
    assert!((ev[0] - 0.5).abs() < 1e-9 && (ev[1] - 3.0).abs() < 1e-9, "{ev:?}");
    assert!(solve_spd(&f, &[1.0, 1.0]).unwrap().iter().all(|x| x.is_finite()));
}

#[test]
fn adassp_ridge_is_zero_for_well_conditioned_and_positive_for_noisy_systems() {
    let (x, y) = data(2000, 3);
    let (g, _) = gram(&x, &y);
    assert_eq!(adassp_lambda(&g, 1e-6, 0.05).unwrap(), 0.0);
    let lam = adassp_lambda(&g, 1e6, 0.05).unwrap();
    assert!(lam > 0.0);
    let bad = vec![vec![1.0, 2.0], vec![2.0, 1.0]];
    let lam = adassp_lambda(&bad, 0.0, 0.05).unwrap();
    let mut shifted = bad.clone();
    shifted[0][0] += lam;
    shifted[1][1] += lam;
    assert!(
        min_eigenvalue(&shifted).unwrap() > 0.0,
        "always positive definite after the ridge"
    );
}

#[test]
fn pass_glm_quadratic_is_close_to_the_log_likelihood() {
    let [b0, b1, b2] = pass_glm_coefficients(4.0);
    assert!(b2 < 0.0 && b1 > 0.0, "concave with slope at 0: {b0} {b1} {b2}");
    for s in [-4.0f64, -2.0, 0.0, 1.0, 3.0] {
        let phi = -(1.0 + (-s).exp()).ln();
        let q = b0 + b1 * s + b2 * s * s;
        assert!((phi - q).abs() < 0.2, "s={s}: {phi} vs {q}");
    }
}
