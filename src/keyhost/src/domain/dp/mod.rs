//! Differential privacy of sum answer keys.
//!
//! A sum answered under a grant with `epsilon` gets integer noise `η` added by the keyhost:
//! the answer key is `key − η`, so the analyst reveals `sum + η` (in the column's stored
//! fixed-point units). Mechanisms ([`Mechanism`]):
//!
//! - **discrete Laplace** (no `delta`): scale `Δ/ε`, ε-DP (and `ε²/2`-zCDP);
//! - **discrete Gaussian** (with `delta`): ρ-zCDP with `ρ = (√(ε + ln(1/δ)) − √ln(1/δ))²`, the
//!   largest ρ whose zCDP guarantee implies (ε, δ)-DP (Bun–Steinke 2016, Prop. 1.3), and
//!   `σ² = Δ² / (2ρ)` (rounded up).
//!
//! Both are charged to one (ε, δ) total per identity × dataset ([`accounting`]).
//!
//! `Δ` (sensitivity) = `k_max · Σ_t |w_t| · (hi_t − lo_t)` over the sum's terms, from the
//! columns' declared bounds, which the encryption enforces. Row ids and null positions are
//! public, so neighbouring tables differ by replacing one row's value; a row counted `k_max`
//! times (after a join or concat) moves the sum `k_max` times as far.
//!
//! Samples are exact (`sampler.rs`, Canonne–Kamath–Steinke). The random bits are a ChaCha20
//! stream seeded with `HMAC-SHA256(noise key, canonical request)` where the canonical request
//! names the identity, the dataset, the terms (column, key epoch, weight), the rid set and the
//! mechanism: the same request asked twice gets the same noise (repetition does not average it
//! away) and is charged once. The request's ledger id also commits to the noise key
//! (its fingerprint), so requests charged under a lost key are charged again under a new one.

pub mod accounting;
pub mod sampler;

use hmac::{Hmac, Mac};
use num_bigint::{BigInt, BigUint};
use num_traits::ToPrimitive;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub use accounting::{Cost, Spent};
use sampler::Ratio;

/// The noise mechanism of one answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mechanism {
    Laplace { epsilon: f64 },
    Gaussian { epsilon: f64, delta: f64 },
}

/// ρ of zCDP implying (ε, δ)-DP.
pub fn rho_for(epsilon: f64, delta: f64) -> f64 {
    let l = (1.0 / delta).ln();
    ((epsilon + l).sqrt() - l.sqrt()).powi(2)
}

impl Mechanism {
    pub fn new(epsilon: f64, delta: Option<f64>) -> Mechanism {
        match delta {
            None => Mechanism::Laplace { epsilon },
            Some(delta) => Mechanism::Gaussian { epsilon, delta },
        }
    }

    /// The privacy cost of one answer (see [`accounting`]).
    pub fn cost(&self) -> Cost {
        match *self {
            Mechanism::Laplace { epsilon } => Cost {
                epsilon,
                delta: 0.0,
                rho: epsilon * epsilon / 2.0,
            },
            Mechanism::Gaussian { epsilon, delta } => Cost {
                epsilon,
                delta,
                rho: rho_for(epsilon, delta),
            },
        }
    }

    fn canonical(&self) -> String {
        match *self {
            Mechanism::Laplace { epsilon } => format!("laplace:{:016x}", epsilon.to_bits()),
            Mechanism::Gaussian { epsilon, delta } => {
                format!("gaussian:{:016x}:{:016x}", epsilon.to_bits(), delta.to_bits())
            }
        }
    }

    /// Public description of the mechanism, returned with the answer key.
    pub fn describe(&self, sensitivity: &BigUint) -> Value {
        let d = sensitivity.to_f64().unwrap_or(f64::INFINITY);
        match *self {
            Mechanism::Laplace { epsilon } => json!({
                "mechanism": "discrete_laplace", "epsilon": epsilon, "sensitivity": d, "scale": d / epsilon,
            }),
            Mechanism::Gaussian { epsilon, delta } => {
                let rho = rho_for(epsilon, delta);
                json!({
                    "mechanism": "discrete_gaussian", "epsilon": epsilon, "delta": delta, "rho": rho,
                    "sensitivity": d, "sigma": d / (2.0 * rho).sqrt(),
                })
            }
        }
    }
}

/// A public fingerprint of the noise key (SHA-256 under its own label): binds ledger ids of
/// requests to the key their noise came from.
pub fn key_fingerprint(noise_key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"ghostpii/v1/noise-key-id\0");
    h.update(noise_key);
    h.finalize().into()
}

/// The terms of a sum in canonical form for the noise request, from the audit params' `terms`
/// (`[{column_id, epoch, weight}]`): `column:epoch:weight`, sorted.
pub fn canonical_terms(terms: &Value) -> String {
    let mut out: Vec<String> = terms
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| format!("{}:{}:{}", t["column_id"], t["epoch"], t["weight"]))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.join(",")
}

/// Everything needed to draw the noise of one request.
#[derive(Debug, Clone)]
pub struct NoisePlan {
    pub mechanism: Mechanism,
    pub sensitivity: BigUint,
    /// SHA-256 of the canonical request: identifies repeats in the budget ledger.
    pub request: String,
    seed: [u8; 32],
}

impl NoisePlan {
    /// `canonical` must name identity, dataset, terms and rid set; the mechanism and the
    /// sensitivity are appended here.
    pub fn new(noise_key: &[u8], canonical: &str, mechanism: Mechanism, sensitivity: BigUint) -> NoisePlan {
        let full = format!("ghostpii/v1/dp|{canonical}|{}|{sensitivity}", mechanism.canonical());
        let mut id = Sha256::new();
        id.update(b"ghostpii/v1/dp-request\0");
        id.update(key_fingerprint(noise_key));
        id.update(full.as_bytes());
        let request = hex::encode(id.finalize());
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(noise_key).expect("HMAC takes any key length");
        mac.update(full.as_bytes());
        let seed: [u8; 32] = mac.finalize().into_bytes().into();
        NoisePlan {
            mechanism,
            sensitivity,
            request,
            seed,
        }
    }

    /// The noise η (deterministic in the request).
    pub fn sample(&self) -> BigInt {
        use num_traits::Zero;
        if self.sensitivity.is_zero() {
            return BigInt::zero();
        }
        let mut rng = ChaCha20Rng::from_seed(self.seed);
        match self.mechanism {
            Mechanism::Laplace { epsilon } => {
                // scale Δ/ε = Δ·den/num with ε = num/den exactly
                let e = Ratio::from_f64(epsilon).expect("epsilon validated positive and finite");
                let t = &self.sensitivity * &e.den;
                sampler::discrete_laplace(&mut rng, &e.num, &t)
            }
            Mechanism::Gaussian { epsilon, delta } => {
                let rho = rho_for(epsilon, delta);
                // σ² = Δ²/(2ρ), rounded up (more noise is always safe)
                let d = self.sensitivity.to_f64().unwrap_or(f64::MAX);
                let sigma2 = (d * d / (2.0 * rho)) * (1.0 + 1e-9);
                let r = Ratio::from_f64(sigma2).unwrap_or_else(|| Ratio::from_f64(f64::MAX).expect("finite"));
                sampler::discrete_gaussian(&mut rng, &r)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rho_conversion_implies_the_target_epsilon() {
        for (e, d) in [(1.0, 1e-6), (0.1, 1e-9), (5.0, 1e-5)] {
            let rho = rho_for(e, d);
            let back = rho + 2.0 * (rho * (1.0f64 / d).ln()).sqrt();
            assert!((back - e).abs() < 1e-9, "{e} {d}: {back}");
        }
    }

    #[test]
    fn noise_is_deterministic_per_request_and_differs_across_requests() {
        let key = [7u8; 32];
        let m = Mechanism::new(1.0, None);
        let a = NoisePlan::new(&key, "req-a", m, BigUint::from(100u32));
        let b = NoisePlan::new(&key, "req-a", m, BigUint::from(100u32));
        assert_eq!(a.sample(), b.sample());
        assert_eq!(a.request, b.request);
        let draws: std::collections::HashSet<_> = (0..20)
            .map(|i| NoisePlan::new(&key, &format!("req-{i}"), m, BigUint::from(100u32)).sample())
            .collect();
        assert!(draws.len() > 10);
        let other_key = NoisePlan::new(&[8u8; 32], "req-a", m, BigUint::from(100u32));
        assert_ne!(other_key.request, a.request, "ledger ids are bound to the noise key");
    }

    /// 2,000 draws of the configured mechanisms: mean and variance within bounds.
    #[test]
    fn configured_noise_has_the_calibrated_scale() {
        let key = [1u8; 32];
        let sens = BigUint::from(100u32);
        let n = 2000;
        let draw = |m: Mechanism| -> Vec<f64> {
            (0..n)
                .map(|i| {
                    NoisePlan::new(&key, &format!("q{i}"), m, sens.clone())
                        .sample()
                        .to_f64()
                        .unwrap()
                })
                .collect()
        };
        let stats = |xs: &[f64]| {
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() as f64 - 1.0);
            (mean, var)
        };
        // Laplace, ε = 0.5: scale b = 200, variance ≈ 2b² = 80,000.
        let (m, v) = stats(&draw(Mechanism::new(0.5, None)));
        let var = 2.0 * 200.0f64.powi(2);
        assert!(m.abs() < 5.0 * (var / n as f64).sqrt(), "laplace mean {m}");
        assert!((v / var - 1.0).abs() < 0.3, "laplace variance {v} vs {var}");
        // Gaussian, ε = 1, δ = 1e-6.
        let mech = Mechanism::new(1.0, Some(1e-6));
        let rho = rho_for(1.0, 1e-6);
        let var = 100.0f64.powi(2) / (2.0 * rho);
        let (m, v) = stats(&draw(mech));
        assert!(m.abs() < 5.0 * (var / n as f64).sqrt(), "gaussian mean {m}");
        assert!((v / var - 1.0).abs() < 0.2, "gaussian variance {v} vs {var}");
    }
}
