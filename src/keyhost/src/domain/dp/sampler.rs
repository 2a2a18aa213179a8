//! Exact samplers of Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential
//! Privacy" (NeurIPS 2020), Algorithms 1–3, over arbitrary-precision integers: no floating
//! point touches the sampled values, so the output distribution is exactly the discrete
//! Laplace / discrete Gaussian (given uniform random bits).
//!
//! Randomness comes from the caller's [`RngCore`] (a ChaCha20 stream seeded per request, see
//! `dp/mod.rs`), so a request asked twice gets the same sample.

use num_bigint::{BigInt, BigUint, Sign};
use num_traits::{One, Zero};
use rand::RngCore;

/// A positive rational `num / den` (exact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ratio {
    pub num: BigUint,
    pub den: BigUint,
}

impl Ratio {
    pub fn new(num: BigUint, den: BigUint) -> Ratio {
        assert!(!den.is_zero(), "a ratio needs a non-zero denominator");
        Ratio { num, den }
    }

    /// The exact value of a finite, non-negative f64.
    pub fn from_f64(x: f64) -> Option<Ratio> {
        if !x.is_finite() || x < 0.0 {
            return None;
        }
        if x == 0.0 {
            return Some(Ratio::new(BigUint::zero(), BigUint::one()));
        }
        let bits = x.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i64;
        let frac = bits & ((1u64 << 52) - 1);
        let (mant, e) = if exp == 0 {
            (frac, -1074)
        } else {
            (frac | (1u64 << 52), exp - 1075)
        };
        // lowest terms: cancel common factors of two
        let tz = i64::from(mant.trailing_zeros()).min((-e).max(0));
        let (mant, e) = (mant >> tz, e + tz);
        let m = BigUint::from(mant);
        Some(if e >= 0 {
            Ratio::new(m << (e as usize), BigUint::one())
        } else {
            Ratio::new(m, BigUint::one() << ((-e) as usize))
        })
    }
}

/// Uniform integer in `[0, n)`, `n > 0`, by rejection sampling on `bits(n)` random bits.
pub fn uniform_below<R: RngCore>(rng: &mut R, n: &BigUint) -> BigUint {
    let bits = n.bits();
    let nbytes = bits.div_ceil(8) as usize;
    let excess = (nbytes as u64) * 8 - bits;
    let mut buf = vec![0u8; nbytes];
    loop {
        rng.fill_bytes(&mut buf);
        if excess > 0 {
            // big-endian: mask the top byte down to `bits` bits
            buf[0] &= 0xffu8 >> excess;
        }
        let r = BigUint::from_bytes_be(&buf);
        if &r < n {
            return r;
        }
    }
}

/// Bernoulli(num / den), `num <= den`.
pub fn bernoulli<R: RngCore>(rng: &mut R, num: &BigUint, den: &BigUint) -> bool {
    &uniform_below(rng, den) < num
}

/// Bernoulli(exp(-γ)) for `γ = num / den ∈ [0, 1]` (CKS Algorithm 1, first case).
fn bernoulli_exp_le1<R: RngCore>(rng: &mut R, num: &BigUint, den: &BigUint) -> bool {
    let mut k = BigUint::one();
    loop {
        // A_k ~ Bernoulli(γ / k)
        if !bernoulli(rng, num, &(den * &k)) {
            break;
        }
        k += 1u32;
    }
    // return 1 iff K is odd
    k.bit(0)
}

/// Bernoulli(exp(-γ)) for any rational `γ = num / den ≥ 0` (CKS Algorithm 1).
pub fn bernoulli_exp<R: RngCore>(rng: &mut R, gamma: &Ratio) -> bool {
    let (num, den) = (&gamma.num, &gamma.den);
    if num <= den {
        return bernoulli_exp_le1(rng, num, den);
    }
    let whole = num / den;
    let one = BigUint::one();
    let mut i = BigUint::zero();
    while i < whole {
        if !bernoulli_exp_le1(rng, &one, &one) {
            return false;
        }
        i += 1u32;
    }
    bernoulli_exp_le1(rng, &(num % den), den)
}

/// Discrete Laplace with scale `t / s` (`P[x] ∝ exp(-|x| s / t)`), CKS Algorithm 2.
pub fn discrete_laplace<R: RngCore>(rng: &mut R, s: &BigUint, t: &BigUint) -> BigInt {
    let one = BigUint::one();
    loop {
        let u = uniform_below(rng, t);
        if !bernoulli_exp(rng, &Ratio::new(u.clone(), t.clone())) {
            continue;
        }
        let mut v = BigUint::zero();
        while bernoulli_exp(rng, &Ratio::new(one.clone(), one.clone())) {
            v += 1u32;
        }
        let x = u + t * v;
        let y = x / s;
        let mut b = [0u8; 1];
        rng.fill_bytes(&mut b);
        let negative = b[0] & 1 == 1;
        if negative && y.is_zero() {
            continue;
        }
        return BigInt::from_biguint(if negative { Sign::Minus } else { Sign::Plus }, y);
    }
}

/// Discrete Gaussian with variance parameter `σ² = sigma2` (`P[x] ∝ exp(-x² / 2σ²)`),
/// CKS Algorithm 3.
pub fn discrete_gaussian<R: RngCore>(rng: &mut R, sigma2: &Ratio) -> BigInt {
    let one = BigUint::one();
    // t = floor(σ) + 1 = floor(sqrt(floor(σ²))) + 1
    let t = (&sigma2.num / &sigma2.den).sqrt() + 1u32;
    loop {
        let y = discrete_laplace(rng, &one, &t);
        let ay = y.magnitude();
        // γ = (|y| - σ²/t)² / (2σ²) = (|y|·t·b - a)² / (2·a·t²·b)  with σ² = a/b
        let (a, b) = (&sigma2.num, &sigma2.den);
        let lhs = ay * &t * b;
        let diff = if lhs >= *a { lhs - a } else { a - lhs };
        let gamma = Ratio::new(&diff * &diff, BigUint::from(2u32) * a * &t * &t * b);
        if bernoulli_exp(rng, &gamma) {
            return y;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_traits::ToPrimitive;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn stats(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var)
    }

    #[test]
    fn exact_rationals_of_floats() {
        assert_eq!(
            Ratio::from_f64(0.5),
            Some(Ratio::new(BigUint::one(), BigUint::from(2u32)))
        );
        let r = Ratio::from_f64(1.0e6).unwrap();
        assert_eq!(&r.num / &r.den, BigUint::from(1_000_000u32));
        assert!(Ratio::from_f64(-1.0).is_none() && Ratio::from_f64(f64::NAN).is_none());
    }

    #[test]
    fn bernoulli_exp_has_the_right_mean() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for (num, den) in [(1u32, 2u32), (3, 1), (7, 3)] {
            let g = Ratio::new(BigUint::from(num), BigUint::from(den));
            let n = 20_000;
            let hits = (0..n).filter(|_| bernoulli_exp(&mut rng, &g)).count() as f64 / n as f64;
            let p = (-(num as f64) / den as f64).exp();
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            assert!((hits - p).abs() < 5.0 * sd, "γ={num}/{den}: {hits} vs {p}");
        }
    }

    #[test]
    fn discrete_laplace_mean_and_variance() {
        // scale b = t/s = 10/3; Var = 2·e^{-1/b} / (1 - e^{-1/b})²
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let (s, t) = (BigUint::from(3u32), BigUint::from(10u32));
        let xs: Vec<f64> = (0..2000)
            .map(|_| discrete_laplace(&mut rng, &s, &t).to_f64().unwrap())
            .collect();
        let q = (-0.3f64).exp();
        let var = 2.0 * q / (1.0 - q).powi(2);
        let (m, v) = stats(&xs);
        assert!(m.abs() < 5.0 * (var / 2000.0).sqrt(), "mean {m}");
        assert!((v / var - 1.0).abs() < 0.25, "variance {v} vs {var}");
    }

    #[test]
    fn discrete_gaussian_mean_and_variance() {
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let sigma2 = Ratio::from_f64(400.0).unwrap();
        let xs: Vec<f64> = (0..2000)
            .map(|_| discrete_gaussian(&mut rng, &sigma2).to_f64().unwrap())
            .collect();
        let (m, v) = stats(&xs);
        assert!(m.abs() < 5.0 * (400.0f64 / 2000.0).sqrt(), "mean {m}");
        // Var of the sample variance ≈ 2σ⁴/(n-1): 5 sd ≈ 16% of σ².
        assert!((v / 400.0 - 1.0).abs() < 0.2, "variance {v}");
    }
}
