//! Privacy accounting: one (ε, δ) total per identity × dataset caps every mechanism.
//!
//! Each answer has a [`Cost`]: its own `(ε_i, δ_i)` guarantee (discrete Laplace: `(ε, 0)`;
//! discrete Gaussian: the grant's `(ε, δ)`) and its zCDP parameter `ρ_i` (discrete Laplace is
//! pure ε-DP, hence `ε²/2`-zCDP, Bun–Steinke 2016 Prop. 1.4; the discrete Gaussian with
//! `σ² = Δ²/(2ρ)` is ρ-zCDP, Canonne–Kamath–Steinke 2020). An account sums all three.
//!
//! Against a total `(ε_T, δ_T)` the ε spent is the smaller of two sound bounds, each at `δ_T/2`:
//!
//! - **basic composition**: `Σ ε_i`, valid while `Σ δ_i ≤ δ_T/2` (else infinite);
//! - **zCDP**: `ρ = Σ ρ_i` gives `(ρ + 2√(ρ · ln(2/δ_T)), δ_T/2)`-DP (Bun–Steinke Prop. 1.3).
//!
//! Both are valid privacy filters under adaptive choice of the queries (Rogers et al. 2016 for
//! basic composition; Feldman–Zrnic 2021 for Rényi/zCDP). An answer is issued only if, with it,
//! one of them stays within `ε_T`. Whatever the analyst did, the transcript lies in the event
//! "the basic bound stayed within ε_T" or in "the zCDP bound stayed within ε_T"; on each event
//! the keyhost behaved exactly like the filter of that bound alone, so each contributes at most
//! `(ε_T, δ_T/2)`: the whole interaction is `(ε_T, δ_T)`-DP.

/// Slack for floating-point sums of costs.
const SLACK: f64 = 1e-9;

/// The privacy cost of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Cost {
    pub epsilon: f64,
    pub delta: f64,
    pub rho: f64,
}

/// What an account has spent: sums of the answers' costs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Spent {
    pub epsilon_sum: f64,
    pub delta_sum: f64,
    pub rho: f64,
    pub answers: i64,
}

/// ε of `(ε, δ)`-DP implied by ρ-zCDP.
pub fn zcdp_epsilon(rho: f64, delta: f64) -> f64 {
    if rho <= 0.0 {
        return 0.0;
    }
    rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()
}

impl Spent {
    pub fn plus(&self, c: &Cost) -> Spent {
        Spent {
            epsilon_sum: self.epsilon_sum + c.epsilon,
            delta_sum: self.delta_sum + c.delta,
            rho: self.rho + c.rho,
            answers: self.answers + 1,
        }
    }

    /// Basic composition: `Σ ε_i` if `Σ δ_i ≤ δ_T/2`, else infinite.
    pub fn basic_epsilon(&self, delta_total: f64) -> f64 {
        if self.delta_sum <= delta_total / 2.0 * (1.0 + SLACK) {
            self.epsilon_sum
        } else {
            f64::INFINITY
        }
    }

    /// zCDP: the ε that `Σ ρ_i` implies at `δ_T/2`.
    pub fn zcdp_epsilon(&self, delta_total: f64) -> f64 {
        zcdp_epsilon(self.rho, delta_total / 2.0)
    }

    /// The ε spent against a total with `δ_T`: the smaller sound bound.
    pub fn epsilon(&self, delta_total: f64) -> f64 {
        self.basic_epsilon(delta_total).min(self.zcdp_epsilon(delta_total))
    }

    /// Whether this spending stays within `(ε_T, δ_T)`.
    pub fn within(&self, epsilon_total: f64, delta_total: f64) -> bool {
        self.epsilon(delta_total) <= epsilon_total + SLACK
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::dp::Mechanism;

    fn spend(m: Mechanism, n: usize) -> Spent {
        let c = m.cost();
        (0..n).fold(Spent::default(), |s, _| s.plus(&c))
    }

    #[test]
    fn laplace_answers_compose_by_the_tighter_bound() {
        // Few large answers: basic composition is tighter.
        let s = spend(Mechanism::new(0.5, None), 4);
        assert!((s.epsilon(1e-5) - 2.0).abs() < 1e-12);
        // Many small answers: zCDP is tighter than Σε = 10.
        let s = spend(Mechanism::new(0.01, None), 1000);
        let e = s.epsilon(1e-5);
        assert!(e < 4.0 && (e - s.zcdp_epsilon(1e-5)).abs() < 1e-12, "{e}");
    }

    #[test]
    fn gaussian_and_laplace_answers_share_one_total() {
        let (t, d) = (2.0, 1e-5);
        let gauss = Mechanism::new(1.0, Some(1e-6)).cost();
        let mut s = Spent::default();
        let mut n = 0;
        while s.plus(&gauss).within(t, d) {
            s = s.plus(&gauss);
            n += 1;
        }
        assert!((1..10).contains(&n), "{n} Gaussian answers fit in ε = 2");
        // The Laplace answers then fit only into what is left.
        let lap = Mechanism::new(1.0, None).cost();
        assert!(!s.plus(&lap).within(t, d));
        assert!(spend(Mechanism::new(1.0, None), 2).within(t, d));
        assert!(!spend(Mechanism::new(1.0, None), 3).within(t, d));
    }

    #[test]
    fn a_single_answer_fits_a_budget_of_its_own_epsilon() {
        for m in [Mechanism::new(1.0, None), Mechanism::new(1.0, Some(1e-6))] {
            assert!(spend(m, 1).within(1.0, 1e-5), "{m:?}");
        }
    }
}
