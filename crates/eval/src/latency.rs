//! Latency summaries of measured wall times.

use serde::{Deserialize, Serialize};

/// Percentiles of measured durations, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    /// Summarises durations in seconds with nearest-rank percentiles (the smallest value with
    /// at least q of the samples at or below it); all zeros for no durations.
    pub fn from_seconds(durations: &[f64]) -> Self {
        if durations.is_empty() {
            return Self::default();
        }
        let mut sorted: Vec<f64> = durations.iter().map(|seconds| seconds * 1e3).collect();
        sorted.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let position = (q * sorted.len() as f64).ceil() as usize;
            sorted[position.clamp(1, sorted.len()) - 1]
        };
        Self {
            count: sorted.len(),
            mean_ms: sorted.iter().sum::<f64>() / sorted.len() as f64,
            p50_ms: rank(0.5),
            p90_ms: rank(0.9),
            p99_ms: rank(0.99),
            max_ms: sorted[sorted.len() - 1],
        }
    }
}

/// Expected calibration error of a head: the sample-weighted mean of |accuracy − confidence|
/// over `bins` equal-width confidence bins on [0, 1] (Guo et al. 2017). A confidence of exactly
/// 1 falls in the last bin. Returns 0 for no samples.
pub fn expected_calibration_error(confidences: &[f64], correct: &[bool], bins: usize) -> f64 {
    let bins = bins.max(1);
    let mut count = vec![0usize; bins];
    let mut confidence_sum = vec![0.0f64; bins];
    let mut correct_sum = vec![0usize; bins];
    for (&confidence, &is_correct) in confidences.iter().zip(correct) {
        let bin = ((confidence * bins as f64) as usize).min(bins - 1);
        count[bin] += 1;
        confidence_sum[bin] += confidence;
        correct_sum[bin] += usize::from(is_correct);
    }
    let total: usize = count.iter().sum();
    if total == 0 {
        return 0.0;
    }
    (0..bins)
        .filter(|&bin| count[bin] > 0)
        .map(|bin| {
            let n = count[bin] as f64;
            (correct_sum[bin] as f64 / n - confidence_sum[bin] / n).abs() * n
        })
        .sum::<f64>()
        / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let durations: Vec<f64> = (1..=100).map(|ms| ms as f64 / 1e3).collect();
        let summary = LatencySummary::from_seconds(&durations);
        assert_eq!(summary.count, 100);
        assert!((summary.p50_ms - 50.0).abs() < 1e-9);
        assert!((summary.p90_ms - 90.0).abs() < 1e-9);
        assert!((summary.p99_ms - 99.0).abs() < 1e-9);
        assert!((summary.max_ms - 100.0).abs() < 1e-9);
        assert!((summary.mean_ms - 50.5).abs() < 1e-9);
    }

    // Bin [0.8, 0.9): confidences 0.8, 0.8, accuracy 1/2 → gap 0.3 over 2 of 4 samples.
    // Bin [0.9, 1]: confidences 0.9, 1.0, accuracy 1 → gap 0.05 over 2 of 4 samples.
    #[test]
    fn ece_by_hand() {
        let ece = expected_calibration_error(&[0.8, 0.8, 0.9, 1.0], &[true, false, true, true], 10);
        assert!((ece - (0.3 * 2.0 + 0.05 * 2.0) / 4.0).abs() < 1e-9, "{ece}");
        assert_eq!(expected_calibration_error(&[], &[], 10), 0.0);
    }
}
