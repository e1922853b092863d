//! The early-exit section of an evaluation: sweeps, calibrated thresholds, compute and
//! latency, confidence calibration and distribution shift.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::calibration::CalibratedThreshold;
use crate::latency::LatencySummary;
use crate::sweep::SweepPoint;

/// Everything measured about the exits of one trained early-exit model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExitReport {
    /// Analytic FLOPs (2 per multiply–add) of each layer block.
    pub layer_flops: Vec<u64>,
    /// Analytic FLOPs of each exit head.
    pub head_flops: Vec<u64>,
    /// Threshold sweep of every rule on the test split, each point marked if it is on its
    /// rule's Pareto frontier.
    pub sweep: Vec<SweepPoint>,
    /// Thresholds chosen on the validation split, with their test results.
    pub calibrated: Vec<CalibratedThreshold>,
    /// Expected calibration error of each head's maximum softmax probability on the test
    /// split, 15 bins.
    pub ece_per_exit: Vec<f64>,
    /// Soft expected FLOP fraction on the test split: the mean over samples of the FLOPs
    /// expected under the learned gates' halting distribution. `None` without gates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_flop_fraction: Option<f64>,
    /// Compute of the first calibrated threshold: counted and measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<ComputeReport>,
    /// The model on shifted test data, keyed by shift name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shifts: BTreeMap<String, ShiftReport>,
}

/// Counted and measured compute of hard exits at one threshold, against the full network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComputeReport {
    pub rule: String,
    pub threshold: f64,
    /// FLOP fraction the validation split predicted for this threshold.
    pub validation_flop_fraction: f64,
    /// FLOP fraction counted from the test samples' exit layers.
    pub counted_flop_fraction: f64,
    /// Mean layers executed per test sample.
    pub mean_layers: f64,
    /// Per-sample latency of early exits at batch size 1.
    pub batch1_exits: LatencySummary,
    /// Per-sample latency of the full network (every layer, no exit logic) at batch size 1.
    pub batch1_full: LatencySummary,
    /// Batch size of the per-batch measurements.
    pub batch_size: usize,
    /// Per-batch latency of early exits.
    pub batched_exits: LatencySummary,
    /// Per-batch latency of the full network.
    pub batched_full: LatencySummary,
    /// Median time with exits divided by median full time, at batch size 1. Medians, because
    /// on a shared machine a few preempted calls can move a mean by more than the exits save.
    pub batch1_time_fraction: f64,
    /// Median time with exits divided by median full time, at `batch_size`.
    pub batched_time_fraction: f64,
}

/// Accuracy and exit depths of the trained model on one shifted test set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShiftReport {
    /// The change applied to the test images, with its parameters.
    pub description: String,
    pub samples: usize,
    /// Accuracy of each head when every sample runs the whole network.
    pub accuracy_per_exit: Vec<f64>,
    /// Hard exits at the first calibrated threshold, then at the recipe's rule and
    /// threshold; compare with the same rule and threshold in the test sweep.
    pub points: Vec<SweepPoint>,
}
