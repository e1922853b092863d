//! Choosing an exit threshold on the validation split from a sweep of candidate thresholds.
//!
//! Three criteria: keep accuracy within δ of the last exit, meet a compute budget, or bound
//! the rate at which the early answer differs from the full model's with confidence 1 − α
//! (Learn-then-Test, Angelopoulos et al. 2021, as CALM uses it, Schuster et al. 2022).

use serde::{Deserialize, Serialize};

use crate::sweep::SweepPoint;

/// A threshold chosen on the validation split and what it gave there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibratedThreshold {
    /// `accuracy_within`, `flop_budget` or `risk_controlled`.
    pub criterion: String,
    /// The criterion's target: δ, the FLOP budget, or the tolerated disagreement rate ε.
    pub target: f64,
    pub rule: String,
    pub threshold: f64,
    /// The sweep point of the chosen threshold on the validation split.
    pub validation: SweepPoint,
    /// The same threshold on the test split, filled in by the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<SweepPoint>,
}

/// Returns the index of the point with the lowest FLOP fraction whose accuracy is at least
/// `full_accuracy − delta` (inclusive), or `None` when no point qualifies. Ties in compute go
/// to the higher accuracy.
pub fn choose_within_accuracy(
    points: &[SweepPoint],
    full_accuracy: f64,
    delta: f64,
) -> Option<usize> {
    let floor = full_accuracy - delta;
    best_by(
        points,
        |point| point.accuracy >= floor - 1e-12,
        |a, b| {
            a.flop_fraction
                .total_cmp(&b.flop_fraction)
                .then(b.accuracy.total_cmp(&a.accuracy))
        },
    )
}

/// Returns the index of the most accurate point whose FLOP fraction is at most `budget`
/// (inclusive), or `None` when no point fits. Ties in accuracy go to the lower compute.
pub fn choose_within_budget(points: &[SweepPoint], budget: f64) -> Option<usize> {
    best_by(
        points,
        |point| point.flop_fraction <= budget + 1e-12,
        |a, b| {
            b.accuracy
                .total_cmp(&a.accuracy)
                .then(a.flop_fraction.total_cmp(&b.flop_fraction))
        },
    )
}

/// Chooses a threshold whose disagreement rate with the full model is at most `epsilon` with
/// probability at least 1 − `alpha` over the draw of the `samples` validation samples.
///
/// Learn-then-Test with fixed-sequence testing: `ordered` lists point indices from the most
/// conservative (most compute) to the least. For each, the null hypothesis "risk > ε" is
/// tested with the exact binomial p-value P(Bin(n, ε) ≤ k), k the observed disagreements, and
/// rejected when p ≤ α (inclusive). Testing stops at the first point not rejected; the last
/// rejected point is returned, or `None` when the first is not rejected.
pub fn choose_risk_controlled(
    points: &[SweepPoint],
    ordered: &[usize],
    samples: usize,
    epsilon: f64,
    alpha: f64,
) -> Option<usize> {
    let mut chosen = None;
    for &index in ordered {
        let disagreements = (points[index].disagreement * samples as f64).round() as u64;
        if binomial_cdf(disagreements, samples as u64, epsilon) <= alpha {
            chosen = Some(index);
        } else {
            break;
        }
    }
    chosen
}

/// Returns P(X ≤ k) for X ~ Binomial(n, p), summed in log space.
pub fn binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    if k >= n || p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return 0.0;
    }
    let (log_p, log_q) = (p.ln(), (1.0 - p).ln());
    let mut log_choose = 0.0f64; // ln C(n, 0)
    let mut total = 0.0f64;
    for i in 0..=k {
        if i > 0 {
            log_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        total += (log_choose + i as f64 * log_p + (n - i) as f64 * log_q).exp();
    }
    total.min(1.0)
}

fn best_by(
    points: &[SweepPoint],
    keep: impl Fn(&SweepPoint) -> bool,
    order: impl Fn(&SweepPoint, &SweepPoint) -> std::cmp::Ordering,
) -> Option<usize> {
    (0..points.len())
        .filter(|&index| keep(&points[index]))
        .min_by(|&a, &b| order(&points[a], &points[b]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(threshold: f64, accuracy: f64, flop_fraction: f64, disagreement: f64) -> SweepPoint {
        SweepPoint {
            rule: "confidence".into(),
            threshold,
            accuracy,
            flop_fraction,
            mean_exit_layer: 1.0,
            disagreement,
            exit_shares: vec![],
            pareto: false,
        }
    }

    // A constructed validation sweep, most conservative threshold first.
    fn sweep() -> Vec<SweepPoint> {
        vec![
            point(0.99, 0.950, 0.90, 0.000),
            point(0.95, 0.945, 0.60, 0.010),
            point(0.90, 0.940, 0.45, 0.030),
            point(0.80, 0.925, 0.30, 0.080),
            point(0.50, 0.880, 0.20, 0.150),
        ]
    }

    #[test]
    fn accuracy_target_is_met() {
        let points = sweep();
        // Within 1 point of 0.95: 0.94 qualifies (boundary), 0.925 does not.
        assert_eq!(choose_within_accuracy(&points, 0.95, 0.01), Some(2));
        assert_eq!(choose_within_accuracy(&points, 0.95, 0.0), Some(0));
        assert_eq!(choose_within_accuracy(&points, 0.99, 0.0), None);
    }

    #[test]
    fn budget_target_is_met() {
        let points = sweep();
        assert_eq!(choose_within_budget(&points, 0.5), Some(2));
        assert_eq!(choose_within_budget(&points, 0.3), Some(3));
        assert_eq!(choose_within_budget(&points, 0.1), None);
    }

    #[test]
    fn risk_control_stops_at_first_failure() {
        let points = sweep();
        let order = [0, 1, 2, 3, 4];
        // n = 1000, ε = 0.05: 0, 10 and 30 disagreements are far below 50; 80 is above.
        assert_eq!(
            choose_risk_controlled(&points, &order, 1000, 0.05, 0.1),
            Some(2)
        );
        // ε = 0.005: even 0 of 1000 rejects (0.995^1000 ≈ 0.0067), but 10 of 1000 does not.
        assert_eq!(
            choose_risk_controlled(&points, &order, 1000, 0.005, 0.1),
            Some(0)
        );
        // With 20 samples, zero disagreements give p = 0.95^20 ≈ 0.358 > 0.1.
        assert_eq!(choose_risk_controlled(&points, &order, 20, 0.05, 0.1), None);
    }

    #[test]
    fn binomial_cdf_by_hand() {
        // P(Bin(3, 0.5) ≤ 1) = (1 + 3) / 8.
        assert!((binomial_cdf(1, 3, 0.5) - 0.5).abs() < 1e-12);
        assert!((binomial_cdf(0, 20, 0.05) - 0.95f64.powi(20)).abs() < 1e-12);
        assert_eq!(binomial_cdf(3, 3, 0.5), 1.0);
    }
}
