//! Detection of the failure modes of halting runs, each reported with its evidence.

use haltlab_eval::{FailureFlag, FailureKind, Histogram};

/// Limits beyond which a run is flagged. Shares are fractions of samples; accuracy margins are
/// absolute fractions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureCriteria {
    /// *never stops*: share of samples at step M strictly above this.
    pub never_stops_share: f64,
    /// *collapse to shallow*: share of samples at step 1 strictly above this...
    pub shallow_share: f64,
    /// ...while accuracy is below chance plus this margin.
    pub chance_margin: f64,
    /// *training–inference mismatch*: soft and hard accuracy differ by more than this...
    pub mismatch_accuracy: f64,
    /// ...or soft expected and hard mean steps differ by more than this many steps.
    pub mismatch_steps: f64,
    /// *threshold sensitivity*: accuracy changes by more than this over the neighbourhood.
    pub sensitivity: f64,
}

impl Default for FailureCriteria {
    fn default() -> Self {
        Self {
            never_stops_share: 0.5,
            shallow_share: 0.9,
            chance_margin: 0.1,
            mismatch_accuracy: 0.05,
            mismatch_steps: 1.0,
            sensitivity: 0.05,
        }
    }
}

/// Accuracy of the hard run at thresholds around the one used.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdProbe {
    /// (threshold, accuracy) pairs, including the threshold in use.
    pub accuracies: Vec<(f64, f64)>,
}

/// Measurements of one evaluation of a halting run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEvidence<'a> {
    /// Hard-run halting steps.
    pub histogram: &'a Histogram,
    /// M, the maximum number of steps.
    pub max_steps: usize,
    /// Accuracy of the hard run.
    pub accuracy: f64,
    /// Accuracy of guessing, 0.5 for parity.
    pub chance: f64,
    /// Soft accuracy, when the method has a soft model.
    pub soft_accuracy: Option<f64>,
    /// Soft expected steps, when the method has a soft model.
    pub expected_steps: Option<f64>,
    pub threshold_probe: Option<ThresholdProbe>,
}

/// Returns every failure mode that `evidence` shows under `criteria`.
pub fn detect(evidence: &RunEvidence, criteria: &FailureCriteria) -> Vec<FailureFlag> {
    let mut flags = Vec::new();
    let shares = evidence.histogram.shares();
    let total = evidence.histogram.total();
    let share_at = |step: usize| {
        if total == 0 || step == 0 {
            0.0
        } else {
            shares.get(step - 1).copied().unwrap_or(0.0)
        }
    };

    let at_max = share_at(evidence.max_steps);
    if total > 0 && at_max > criteria.never_stops_share {
        flags.push(FailureFlag {
            kind: FailureKind::NeverStops,
            evidence: format!(
                "{:.1}% of samples ran to the maximum of {} steps (limit {:.0}%)",
                at_max * 100.0,
                evidence.max_steps,
                criteria.never_stops_share * 100.0
            ),
        });
    }

    let at_first = share_at(1);
    if total > 0
        && evidence.max_steps > 1
        && at_first > criteria.shallow_share
        && evidence.accuracy < evidence.chance + criteria.chance_margin
    {
        flags.push(FailureFlag {
            kind: FailureKind::CollapseToShallow,
            evidence: format!(
                "{:.1}% of samples halted at step 1 with accuracy {:.1}% (chance {:.0}%)",
                at_first * 100.0,
                evidence.accuracy * 100.0,
                evidence.chance * 100.0
            ),
        });
    }

    let accuracy_gap = evidence
        .soft_accuracy
        .map(|soft| (soft - evidence.accuracy).abs());
    let steps_gap = evidence
        .expected_steps
        .map(|expected| (expected - evidence.histogram.mean()).abs());
    let accuracy_off = accuracy_gap.is_some_and(|gap| gap > criteria.mismatch_accuracy);
    let steps_off = steps_gap.is_some_and(|gap| gap > criteria.mismatch_steps);
    if accuracy_off || steps_off {
        flags.push(FailureFlag {
            kind: FailureKind::TrainingInferenceMismatch,
            evidence: format!(
                "soft accuracy {} vs hard {:.1}%; soft expected steps {} vs hard {:.2}",
                format_option(evidence.soft_accuracy.map(|a| a * 100.0), "%"),
                evidence.accuracy * 100.0,
                format_option(evidence.expected_steps, ""),
                evidence.histogram.mean()
            ),
        });
    }

    if let Some(probe) = &evidence.threshold_probe {
        let accuracies = probe.accuracies.iter().map(|&(_, accuracy)| accuracy);
        let high = accuracies.clone().fold(f64::NEG_INFINITY, f64::max);
        let low = accuracies.fold(f64::INFINITY, f64::min);
        if probe.accuracies.len() > 1 && high - low > criteria.sensitivity {
            let points: Vec<String> = probe
                .accuracies
                .iter()
                .map(|(threshold, accuracy)| format!("{threshold:.3}: {:.1}%", accuracy * 100.0))
                .collect();
            flags.push(FailureFlag {
                kind: FailureKind::ThresholdSensitivity,
                evidence: format!(
                    "accuracy spans {:.1} points over thresholds {}",
                    (high - low) * 100.0,
                    points.join(", ")
                ),
            });
        }
    }
    flags
}

fn format_option(value: Option<f64>, unit: &str) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}{unit}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(counts: &[u64]) -> Histogram {
        Histogram {
            counts: counts.to_vec(),
        }
    }

    fn healthy(histogram: &Histogram) -> RunEvidence<'_> {
        RunEvidence {
            histogram,
            max_steps: 5,
            accuracy: 0.99,
            chance: 0.5,
            soft_accuracy: Some(0.995),
            expected_steps: Some(2.6),
            threshold_probe: Some(ThresholdProbe {
                accuracies: vec![(0.45, 0.985), (0.5, 0.99), (0.55, 0.99)],
            }),
        }
    }

    fn kinds(flags: &[FailureFlag]) -> Vec<FailureKind> {
        flags.iter().map(|flag| flag.kind).collect()
    }

    // 10 samples per step 1..4 and 10 at M = 5: 20% at M, 20% at step 1, mean 3.
    #[test]
    fn healthy_run_has_no_flags() {
        let h = histogram(&[10, 10, 10, 10, 10]);
        assert_eq!(
            kinds(&detect(&healthy(&h), &FailureCriteria::default())),
            []
        );
    }

    #[test]
    fn never_stops_fires() {
        let h = histogram(&[1, 1, 1, 1, 96]);
        let evidence = RunEvidence {
            expected_steps: Some(4.9),
            ..healthy(&h)
        };
        let flags = detect(&evidence, &FailureCriteria::default());
        assert_eq!(kinds(&flags), [FailureKind::NeverStops]);
        assert!(flags[0].evidence.contains("96.0%"), "{}", flags[0].evidence);
    }

    #[test]
    fn collapse_to_shallow_fires_only_near_chance() {
        let h = histogram(&[98, 1, 1, 0, 0]);
        let collapsed = RunEvidence {
            accuracy: 0.52,
            soft_accuracy: Some(0.53),
            expected_steps: Some(1.05),
            ..healthy(&h)
        };
        let flags = kinds(&detect(&collapsed, &FailureCriteria::default()));
        assert_eq!(flags, [FailureKind::CollapseToShallow]);
        // Halting at step 1 with high accuracy is an easy task solved early, not a collapse.
        let solved = RunEvidence {
            expected_steps: Some(1.05),
            ..healthy(&h)
        };
        assert_eq!(kinds(&detect(&solved, &FailureCriteria::default())), []);
    }

    #[test]
    fn mismatch_fires_on_accuracy_or_steps() {
        let h = histogram(&[10, 10, 10, 10, 10]);
        let accuracy = RunEvidence {
            soft_accuracy: Some(0.80),
            ..healthy(&h)
        };
        let flags = kinds(&detect(&accuracy, &FailureCriteria::default()));
        assert_eq!(flags, [FailureKind::TrainingInferenceMismatch]);
        let steps = RunEvidence {
            expected_steps: Some(4.5),
            ..healthy(&h)
        };
        let flags = kinds(&detect(&steps, &FailureCriteria::default()));
        assert_eq!(flags, [FailureKind::TrainingInferenceMismatch]);
    }

    #[test]
    fn threshold_sensitivity_fires() {
        let h = histogram(&[10, 10, 10, 10, 10]);
        let evidence = RunEvidence {
            threshold_probe: Some(ThresholdProbe {
                accuracies: vec![(0.45, 0.70), (0.5, 0.99), (0.55, 0.98)],
            }),
            ..healthy(&h)
        };
        let flags = detect(&evidence, &FailureCriteria::default());
        assert_eq!(kinds(&flags), [FailureKind::ThresholdSensitivity]);
        assert!(
            flags[0].evidence.contains("29.0 points"),
            "{}",
            flags[0].evidence
        );
    }
}
