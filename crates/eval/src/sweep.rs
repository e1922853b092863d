//! Threshold sweeps of early-exit rules: accuracy against compute, and the Pareto frontier.

use serde::{Deserialize, Serialize};

/// The outcome of one exit rule at one threshold on one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Rule name: `confidence`, `entropy` or `patience`.
    pub rule: String,
    /// Threshold of the rule: a probability, an entropy in nats, or a patience in heads.
    pub threshold: f64,
    /// Accuracy of the hard predictions.
    pub accuracy: f64,
    /// Mean FLOPs per sample divided by the FLOPs of a sample that runs every layer and head.
    pub flop_fraction: f64,
    /// Mean exit layer, counted from 1.
    pub mean_exit_layer: f64,
    /// Share of samples whose early answer differs from the last head's answer.
    pub disagreement: f64,
    /// Share of samples that exit at each head.
    pub exit_shares: Vec<f64>,
    /// Whether no other point of the same rule has both higher accuracy and lower compute.
    #[serde(default)]
    pub pareto: bool,
}

/// Marks the points of each rule that lie on that rule's accuracy–compute Pareto frontier.
///
/// A point is dominated when another point of the same rule has accuracy at least as high and
/// FLOP fraction at least as low, with one of the two strictly better. Points tied in both
/// stay on the frontier.
pub fn mark_pareto(points: &mut [SweepPoint]) {
    let flags: Vec<bool> = points
        .iter()
        .map(|point| {
            !points.iter().any(|other| {
                other.rule == point.rule
                    && other.accuracy >= point.accuracy
                    && other.flop_fraction <= point.flop_fraction
                    && (other.accuracy > point.accuracy
                        || other.flop_fraction < point.flop_fraction)
            })
        })
        .collect();
    for (point, flag) in points.iter_mut().zip(flags) {
        point.pareto = flag;
    }
}

/// Returns the mean FLOPs per sample of exits at `exit_layer` (counted from 1), where a sample
/// exiting at head l ran layers 1..=l and heads 1..=l, divided by the FLOPs of running every
/// layer and head.
pub fn flop_fraction_of_exits(
    layer_flops: &[u64],
    head_flops: &[u64],
    exit_layer: &[usize],
) -> f64 {
    let mut cumulative = Vec::with_capacity(layer_flops.len());
    let mut total = 0u64;
    for (layer, head) in layer_flops.iter().zip(head_flops) {
        total += layer + head;
        cumulative.push(total);
    }
    if exit_layer.is_empty() || total == 0 {
        return 0.0;
    }
    let spent: f64 = exit_layer
        .iter()
        .map(|&layer| cumulative[layer.clamp(1, cumulative.len()) - 1] as f64)
        .sum();
    spent / exit_layer.len() as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(rule: &str, accuracy: f64, flop_fraction: f64) -> SweepPoint {
        SweepPoint {
            rule: rule.into(),
            threshold: 0.0,
            accuracy,
            flop_fraction,
            mean_exit_layer: 1.0,
            disagreement: 0.0,
            exit_shares: vec![],
            pareto: false,
        }
    }

    #[test]
    fn pareto_drops_dominated_points() {
        let mut points = vec![
            point("confidence", 0.90, 0.3),
            point("confidence", 0.89, 0.4),
            point("confidence", 0.95, 1.0),
            point("confidence", 0.95, 1.0),
            point("entropy", 0.80, 0.5),
        ];
        mark_pareto(&mut points);
        let flags: Vec<bool> = points.iter().map(|p| p.pareto).collect();
        assert_eq!(flags, vec![true, false, true, true, true]);
    }

    // Costs to exit at heads 1 and 2: 10 + 1 = 11 and 11 + 8 + 1 = 20.
    #[test]
    fn flop_fraction_of_mixed_exits() {
        let fraction = flop_fraction_of_exits(&[10, 8], &[1, 1], &[1, 2]);
        assert!((fraction - (11.0 + 20.0) / 2.0 / 20.0).abs() < 1e-12);
        assert_eq!(flop_fraction_of_exits(&[10, 8], &[1, 1], &[2, 2]), 1.0);
    }
}
