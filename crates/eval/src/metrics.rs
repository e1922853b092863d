//! Accuracy and halting-step histograms.

use serde::{Deserialize, Serialize};

/// Counts of samples by halting step or exit layer; `counts[i]` is the number of samples that
/// halted at step i + 1.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    pub counts: Vec<u64>,
}

impl Histogram {
    /// Creates an empty histogram over steps 1..=steps.
    pub fn with_steps(steps: usize) -> Self {
        Self {
            counts: vec![0; steps],
        }
    }

    /// Adds one sample that halted at `step` (counted from 1), growing the histogram if needed.
    /// Step 0 is not a halting step and is ignored.
    pub fn add(&mut self, step: usize) {
        if step == 0 {
            return;
        }
        if self.counts.len() < step {
            self.counts.resize(step, 0);
        }
        self.counts[step - 1] += 1;
    }

    /// Adds every step in `steps`.
    pub fn extend(&mut self, steps: impl IntoIterator<Item = usize>) {
        for step in steps {
            self.add(step);
        }
    }

    /// Number of samples counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Mean halting step, or 0 for an empty histogram.
    pub fn mean(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        let weighted: f64 = self
            .counts
            .iter()
            .enumerate()
            .map(|(index, &count)| (index + 1) as f64 * count as f64)
            .sum();
        weighted / total as f64
    }

    /// Largest halting step with a sample, or 0 for an empty histogram.
    pub fn max(&self) -> usize {
        self.counts
            .iter()
            .rposition(|&count| count > 0)
            .map_or(0, |index| index + 1)
    }

    /// Share of samples at each step; all zeros for an empty histogram.
    pub fn shares(&self) -> Vec<f64> {
        let total = self.total().max(1) as f64;
        self.counts
            .iter()
            .map(|&count| count as f64 / total)
            .collect()
    }
}

/// Fraction of positions where `predictions` equals `targets`; 0 for empty input.
pub fn accuracy(predictions: &[usize], targets: &[usize]) -> f64 {
    let total = predictions.len().min(targets.len());
    if total == 0 {
        return 0.0;
    }
    let correct = predictions
        .iter()
        .zip(targets)
        .filter(|(prediction, target)| prediction == target)
        .count();
    correct as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_mean_and_max() {
        let mut histogram = Histogram::with_steps(5);
        histogram.extend([1, 1, 2, 4]);
        assert_eq!(histogram.counts, vec![2, 1, 0, 1, 0]);
        assert_eq!(histogram.total(), 4);
        assert!((histogram.mean() - 2.0).abs() < 1e-12); // (1 + 1 + 2 + 4) / 4
        assert_eq!(histogram.max(), 4);
    }

    #[test]
    fn histogram_grows_and_ignores_zero() {
        let mut histogram = Histogram::default();
        histogram.add(0);
        histogram.add(3);
        assert_eq!(histogram.counts, vec![0, 0, 1]);
        assert_eq!(Histogram::default().mean(), 0.0);
        assert_eq!(Histogram::default().max(), 0);
    }

    #[test]
    fn accuracy_counts_matches() {
        assert_eq!(accuracy(&[1, 2, 3, 4], &[1, 0, 3, 0]), 0.5);
        assert_eq!(accuracy(&[], &[]), 0.0);
    }
}
