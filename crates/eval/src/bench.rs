//! Benchmark records of `haltlab bench` and of the PyTorch reference under `bench/`, and the
//! report that compares them.
//!
//! Each workload writes one JSON file per implementation into a benchmark directory:
//! `haltlab-act.json`, `pytorch-act.json`, `haltlab-exits.json` and `pytorch-exits.json`. The
//! haltlab files also carry the workload's `spec`, which the reference reads so that both sides
//! run the same sizes. The structs here are the keys both sides write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::latency::LatencySummary;

/// Largest measured-time to FLOP-fraction ratio that counts as hard exits saving wall time in
/// proportion to the compute they skip.
pub const EXIT_TIME_GOAL: f64 = 1.15;

/// Smallest haltlab ÷ PyTorch training throughput that meets the speed goal.
pub const TRAINING_SPEED_GOAL: f64 = 1.5;

/// Resident memory of the process at one training step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RssSample {
    pub step: u64,
    pub rss_mib: f64,
}

/// Timed training steps of one implementation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingThroughput {
    /// Steps timed after the warm-up steps.
    pub timed_steps: u64,
    /// Wall time of the timed steps.
    pub seconds: f64,
    pub samples_per_second: f64,
    pub median_step_ms: f64,
    /// Mean halting step N over the samples of the run.
    pub mean_halting_step: f64,
    /// Resident memory at the steps listed in the workload's `rss_steps`.
    pub rss: Vec<RssSample>,
    /// Peak resident memory of the whole process.
    pub peak_rss_mib: Option<f64>,
}

impl TrainingThroughput {
    /// Summarises the wall-clock time at the end of every step (seconds from any fixed start).
    /// The first `warmup` steps are not timed, and at least one is, so the timed span starts at
    /// the end of the last warm-up step. Returns `None` when no step is left to time. The mean
    /// halting step and memory fields start empty.
    pub fn from_step_marks(marks: &[f64], warmup: usize, batch_size: usize) -> Option<Self> {
        if warmup == 0 || marks.len() <= warmup {
            return None;
        }
        let timed = &marks[warmup - 1..];
        let mut durations: Vec<f64> = timed.windows(2).map(|pair| pair[1] - pair[0]).collect();
        let seconds = timed[timed.len() - 1] - timed[0];
        let timed_steps = durations.len() as u64;
        durations.sort_by(f64::total_cmp);
        let median = durations[durations.len() / 2];
        Some(Self {
            timed_steps,
            seconds,
            samples_per_second: timed_steps as f64 * batch_size as f64 / seconds.max(1e-12),
            median_step_ms: median * 1e3,
            mean_halting_step: 0.0,
            rss: Vec::new(),
            peak_rss_mib: None,
        })
    }

    /// Growth of resident memory from the first to the last sample, in MiB.
    pub fn rss_growth_mib(&self) -> Option<f64> {
        match (self.rss.first(), self.rss.last()) {
            (Some(first), Some(last)) if self.rss.len() > 1 => Some(last.rss_mib - first.rss_mib),
            _ => None,
        }
    }
}

/// Hard early-exit inference and full-depth inference at one batch size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchTiming {
    /// Latency of each early-exit call.
    pub exits: LatencySummary,
    /// Latency of each full-depth call on the same inputs.
    pub full: LatencySummary,
    pub exit_samples_per_second: f64,
    pub full_samples_per_second: f64,
    pub mean_exit_layer: f64,
    /// Counted FLOP fraction of the exits taken (haltlab only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flop_fraction: Option<f64>,
    /// Share of samples whose exit head equals haltlab's (reference only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_layer_agreement: Option<f64>,
}

impl BatchTiming {
    /// Measured wall time ÷ (full-depth wall time × FLOP fraction), with total times over all
    /// calls: 1 when hard exits save time exactly in proportion to the FLOPs they skip.
    /// Returns `None` without a FLOP fraction or with a zero one.
    pub fn time_to_flop_ratio(&self) -> Option<f64> {
        let fraction = self.flop_fraction.filter(|&fraction| fraction > 0.0)?;
        let exit_total = self.exits.mean_ms * self.exits.count as f64;
        let full_total = self.full.mean_ms * self.full.count as f64;
        if full_total <= 0.0 {
            return None;
        }
        Some(exit_total / full_total / fraction)
    }
}

/// Timed early-exit inference of one implementation, keyed by batch size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceThroughput {
    pub batches: BTreeMap<String, BatchTiming>,
    pub peak_rss_mib: Option<f64>,
}

/// One benchmark file: who measured, with what, and the measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRecord<T> {
    /// `haltlab` or `pytorch`.
    pub implementation: String,
    /// `act` or `exits`.
    pub workload: String,
    pub threads: usize,
    /// Backend (haltlab) or library version (reference).
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub torch_version: Option<String>,
    /// ACT training step that haltlab ran: `fused` or `burn` (training workload only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// The workload's parameters: written by haltlab, read and copied back by the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<serde_json::Value>,
    #[serde(flatten)]
    pub result: T,
}

/// Errors of reading a benchmark directory.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{path} not found: {hint}")]
    Missing { path: PathBuf, hint: String },
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a benchmark record: {source}; rerun the command that writes it")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} was measured for another haltlab record: {problem}; {hint}")]
    Mismatch {
        path: PathBuf,
        problem: String,
        hint: String,
    },
}

/// Returns the instruction to write haltlab's record of `workload` into `directory`.
fn haltlab_command(workload: &str, directory: &Path) -> String {
    let recipe = if workload == "act" {
        "experiments/bench_act.toml"
    } else {
        "experiments/mnist_exits.toml --data MNIST_FILE"
    };
    format!(
        "run `haltlab bench {workload} {recipe} --out {}` first",
        directory.display()
    )
}

/// Returns the instruction to write the reference's record of `workload` into `directory`.
fn reference_command(workload: &str, directory: &Path) -> String {
    format!(
        "run `python bench/reference.py {workload} {}` (bench/README.md)",
        directory.display()
    )
}

/// Reads `directory/<implementation>-<workload>.json`.
pub fn read_record<T: serde::de::DeserializeOwned>(
    directory: &Path,
    implementation: &str,
    workload: &str,
) -> Result<BenchRecord<T>, BenchError> {
    let path = directory.join(format!("{implementation}-{workload}.json"));
    if !path.exists() {
        let hint = if implementation == "pytorch" {
            format!(
                "run `python bench/reference.py {workload} {}` first (bench/README.md)",
                directory.display()
            )
        } else {
            format!(
                "run `haltlab bench {workload} --out {}` first",
                directory.display()
            )
        };
        return Err(BenchError::Missing { path, hint });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| BenchError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| BenchError::Parse { path, source })
}

/// haltlab's and the reference's record of one workload.
type RecordPair<T> = (BenchRecord<T>, BenchRecord<T>);

/// Reads both records of `workload`, or returns `None` when neither exists.
fn read_pair<T: serde::de::DeserializeOwned>(
    directory: &Path,
    workload: &str,
) -> Result<Option<RecordPair<T>>, BenchError> {
    let haltlab_path = directory.join(format!("haltlab-{workload}.json"));
    let pytorch_path = directory.join(format!("pytorch-{workload}.json"));
    if !haltlab_path.exists() && !pytorch_path.exists() {
        return Ok(None);
    }
    let haltlab = read_record::<T>(directory, "haltlab", workload)?;
    let pytorch = read_record::<T>(directory, "pytorch", workload)?;
    let mismatch = |problem: String| BenchError::Mismatch {
        path: pytorch_path.clone(),
        problem,
        hint: reference_command(workload, directory),
    };
    if pytorch.spec != haltlab.spec {
        return Err(mismatch(
            "its spec differs from haltlab's; the haltlab record was rewritten after the reference ran".to_owned(),
        ));
    }
    if pytorch.threads != haltlab.threads {
        return Err(mismatch(format!(
            "it ran on {} threads and haltlab on {}",
            pytorch.threads, haltlab.threads
        )));
    }
    Ok(Some((haltlab, pytorch)))
}

/// Peak resident memory of one workload in MiB, per implementation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PeakMemory {
    pub haltlab: Option<f64>,
    pub pytorch: Option<f64>,
}

/// The comparison of one benchmark directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    /// Thread counts of the workloads, once each.
    pub threads: Vec<usize>,
    pub backend: Option<String>,
    /// ACT training step of haltlab's record: `fused` or `burn`.
    pub kernel: Option<String>,
    pub torch_version: Option<String>,
    pub training: Option<TrainingComparison>,
    pub inference: Vec<InferenceComparison>,
    /// Peak resident memory of the inference workload.
    pub inference_peak_rss_mib: PeakMemory,
}

/// haltlab against PyTorch on the training workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingComparison {
    pub haltlab: TrainingThroughput,
    pub pytorch: TrainingThroughput,
    /// haltlab samples/s ÷ PyTorch samples/s.
    pub speed_ratio: f64,
    pub goal: f64,
}

/// haltlab against PyTorch on early-exit inference at one batch size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InferenceComparison {
    pub batch_size: String,
    pub haltlab: BatchTiming,
    pub pytorch: Option<BatchTiming>,
    /// haltlab ÷ PyTorch early-exit samples/s.
    pub speed_ratio: Option<f64>,
    /// haltlab's wall time ÷ (full-depth wall time × FLOP fraction).
    pub time_to_flop_ratio: Option<f64>,
    pub goal: f64,
}

impl BenchReport {
    /// Pairs the haltlab and PyTorch records found in `directory`.
    ///
    /// A workload counts when both of its records exist. A record that exists but does not
    /// parse, a haltlab record without the reference's, and a reference record measured for
    /// another haltlab record (a different `spec`) are errors, and so is a directory without
    /// any complete workload.
    pub fn from_directory(directory: &Path) -> Result<Self, BenchError> {
        if !directory.is_dir() {
            return Err(BenchError::Missing {
                path: directory.to_path_buf(),
                hint: "pass the directory that `haltlab bench` wrote; `just bench` writes results/bench/<time>/".to_owned(),
            });
        }
        let act = read_pair::<TrainingThroughput>(directory, "act")?;
        let exits = read_pair::<InferenceThroughput>(directory, "exits")?;
        if act.is_none() && exits.is_none() {
            return Err(BenchError::Missing {
                path: directory.join("haltlab-act.json"),
                hint: format!(
                    "the directory contains no benchmark records; {}",
                    haltlab_command("act", directory)
                ),
            });
        }

        let mut threads = Vec::new();
        let mut backend = None;
        let mut torch_version = None;
        let mut kernel = None;
        let mut training = None;
        if let Some((haltlab, pytorch)) = act {
            threads.push(haltlab.threads);
            backend = haltlab.backend.clone();
            kernel = haltlab.kernel.clone();
            torch_version = pytorch.torch_version.clone();
            training = Some(TrainingComparison {
                speed_ratio: haltlab.result.samples_per_second
                    / pytorch.result.samples_per_second.max(1e-12),
                haltlab: haltlab.result,
                pytorch: pytorch.result,
                goal: TRAINING_SPEED_GOAL,
            });
        }
        let mut inference = Vec::new();
        let mut inference_peak_rss_mib = PeakMemory::default();
        if let Some((haltlab, pytorch)) = exits {
            threads.push(haltlab.threads);
            backend = backend.or(haltlab.backend.clone());
            torch_version = torch_version.or(pytorch.torch_version.clone());
            inference_peak_rss_mib = PeakMemory {
                haltlab: haltlab.result.peak_rss_mib,
                pytorch: pytorch.result.peak_rss_mib,
            };
            for (batch_size, timing) in haltlab.result.batches {
                let reference = pytorch.result.batches.get(&batch_size).cloned();
                inference.push(InferenceComparison {
                    speed_ratio: reference.as_ref().map(|reference| {
                        timing.exit_samples_per_second
                            / reference.exit_samples_per_second.max(1e-12)
                    }),
                    time_to_flop_ratio: timing.time_to_flop_ratio(),
                    batch_size,
                    haltlab: timing,
                    pytorch: reference,
                    goal: EXIT_TIME_GOAL,
                });
            }
        }
        inference.sort_by_key(|comparison| comparison.batch_size.parse::<usize>().unwrap_or(0));
        threads.dedup();
        Ok(Self {
            threads,
            backend,
            kernel,
            torch_version,
            training,
            inference,
            inference_peak_rss_mib,
        })
    }

    /// Formats the comparison as a plain-text table.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let verdict = |met: bool| if met { "met" } else { "not met" };
        let threads: Vec<String> = self.threads.iter().map(usize::to_string).collect();
        text.push_str(&format!(
            "threads: {}; haltlab backend: {}, ACT kernel: {}; PyTorch: {}\n\n",
            threads.join(" and "),
            self.backend.as_deref().unwrap_or("-"),
            self.kernel.as_deref().unwrap_or("-"),
            self.torch_version.as_deref().unwrap_or("-")
        ));
        text.push_str(&format!(
            "{:<28} {:>16} {:>16} {:>10}\n",
            "workload", "haltlab /s", "PyTorch /s", "ratio"
        ));
        if let Some(training) = &self.training {
            text.push_str(&format!(
                "{:<28} {:>16.0} {:>16.0} {:>10.2}\n",
                "ACT parity training",
                training.haltlab.samples_per_second,
                training.pytorch.samples_per_second,
                training.speed_ratio
            ));
        }
        for comparison in &self.inference {
            let pytorch = comparison
                .pytorch
                .as_ref()
                .map_or("-".to_owned(), |timing| {
                    format!("{:.0}", timing.exit_samples_per_second)
                });
            let ratio = comparison
                .speed_ratio
                .map_or("-".to_owned(), |ratio| format!("{ratio:.2}"));
            text.push_str(&format!(
                "{:<28} {:>16.0} {:>16} {:>10}\n",
                format!("early-exit MLP, batch {}", comparison.batch_size),
                comparison.haltlab.exit_samples_per_second,
                pytorch,
                ratio
            ));
        }
        text.push_str("(samples per second; ratio = haltlab ÷ PyTorch)\n");

        if let Some(training) = &self.training {
            text.push_str(&format!(
                "\ntraining: haltlab {:.2} ms per step, PyTorch {:.2} ms (medians; mean halting step {:.2} and {:.2}); goal ≥ {:.1}×: {}\n",
                training.haltlab.median_step_ms,
                training.pytorch.median_step_ms,
                training.haltlab.mean_halting_step,
                training.pytorch.mean_halting_step,
                training.goal,
                verdict(training.speed_ratio >= training.goal)
            ));
        }
        for comparison in &self.inference {
            if let Some(ratio) = comparison.time_to_flop_ratio {
                text.push_str(&format!(
                    "hard exits, batch {}: wall time ÷ (full-depth wall time × FLOP fraction {:.3}) = {:.3}; goal ≤ {:.2}: {}\n",
                    comparison.batch_size,
                    comparison.haltlab.flop_fraction.unwrap_or(0.0),
                    ratio,
                    comparison.goal,
                    verdict(ratio <= comparison.goal)
                ));
            }
        }
        text.push_str(&self.warnings());
        text.push_str(&self.memory_text());
        text
    }

    /// Lists the ways in which the two sides did different work, which makes their speed ratio
    /// compare unlike things.
    fn warnings(&self) -> String {
        let mut text = String::new();
        if let Some(training) = &self.training {
            let (ours, theirs) = (
                training.haltlab.mean_halting_step,
                training.pytorch.mean_halting_step,
            );
            if (ours - theirs).abs() > 0.01 * ours.max(theirs) {
                text.push_str(&format!(
                    "warning: the mean halting steps differ ({ours:.2} against {theirs:.2}), so the two sides pondered different numbers of steps\n"
                ));
            }
        }
        for comparison in &self.inference {
            let agreement = comparison
                .pytorch
                .as_ref()
                .and_then(|timing| timing.exit_layer_agreement);
            if let Some(agreement) = agreement.filter(|&share| share < 0.99) {
                text.push_str(&format!(
                    "warning: at batch {} the reference took haltlab's exit head for only {:.1}% of the samples, so the two sides did different work\n",
                    comparison.batch_size,
                    agreement * 100.0
                ));
            }
        }
        text
    }

    fn memory_text(&self) -> String {
        let mut text = String::from("\npeak resident memory (MiB):\n");
        let mib = |value: Option<f64>| value.map_or("-".to_owned(), |mib| format!("{mib:.0}"));
        if let Some(training) = &self.training {
            text.push_str(&format!(
                "  ACT parity training: haltlab {}, PyTorch {}\n",
                mib(training.haltlab.peak_rss_mib),
                mib(training.pytorch.peak_rss_mib)
            ));
            for (name, run) in [
                ("haltlab", &training.haltlab),
                ("PyTorch", &training.pytorch),
            ] {
                if let (Some(growth), Some(first), Some(last)) =
                    (run.rss_growth_mib(), run.rss.first(), run.rss.last())
                {
                    text.push_str(&format!(
                        "  {name} resident memory from step {} to step {}: {growth:+.1} MiB\n",
                        first.step, last.step
                    ));
                }
            }
        }
        if !self.inference.is_empty() {
            text.push_str(&format!(
                "  early-exit inference: haltlab {}, PyTorch {}\n",
                mib(self.inference_peak_rss_mib.haltlab),
                mib(self.inference_peak_rss_mib.pytorch)
            ));
        }
        text
    }
}

/// Returns the resident and peak resident memory of this process in MiB, read from
/// `/proc/self/status` (`VmRSS`, `VmHWM`). Returns `None` where that file does not exist, as on
/// systems other than Linux.
pub fn resident_memory_mib() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(count: usize, mean_ms: f64) -> LatencySummary {
        LatencySummary {
            count,
            mean_ms,
            p50_ms: mean_ms,
            p90_ms: mean_ms,
            p99_ms: mean_ms,
            max_ms: mean_ms,
        }
    }

    fn timing(exit_ms: f64, full_ms: f64, flop_fraction: Option<f64>) -> BatchTiming {
        BatchTiming {
            exits: latency(10, exit_ms),
            full: latency(10, full_ms),
            exit_samples_per_second: 1e3 / exit_ms,
            full_samples_per_second: 1e3 / full_ms,
            mean_exit_layer: 1.5,
            flop_fraction,
            exit_layer_agreement: None,
        }
    }

    #[test]
    fn throughput_skips_warmup() {
        // Steps end at 0, 1, 3, 4, 6, 7 s; 2 warm-up steps leave steps 3..6, which take
        // 2, 1, 2, 1 s: 6 s for 4 steps of 10 samples.
        let marks = [0.0, 1.0, 3.0, 4.0, 6.0, 7.0];
        let throughput = TrainingThroughput::from_step_marks(&marks, 2, 10).unwrap();
        assert_eq!(throughput.timed_steps, 4);
        assert!((throughput.seconds - 6.0).abs() < 1e-12);
        assert!((throughput.samples_per_second - 40.0 / 6.0).abs() < 1e-9);
        assert!((throughput.median_step_ms - 2000.0).abs() < 1e-9);
    }

    #[test]
    fn throughput_needs_timed_steps() {
        assert!(TrainingThroughput::from_step_marks(&[0.0, 1.0], 2, 10).is_none());
        assert!(TrainingThroughput::from_step_marks(&[0.0, 1.0], 0, 10).is_none());
    }

    #[test]
    fn time_ratio_by_hand() {
        // Exits take 3 ms, the full network 10 ms, FLOP fraction 0.25: 0.3 / 0.25 = 1.2.
        let ratio = timing(3.0, 10.0, Some(0.25)).time_to_flop_ratio().unwrap();
        assert!((ratio - 1.2).abs() < 1e-12);
        assert_eq!(timing(3.0, 10.0, Some(0.0)).time_to_flop_ratio(), None);
        assert_eq!(timing(3.0, 10.0, None).time_to_flop_ratio(), None);
    }

    #[test]
    fn rss_growth_first_to_last() {
        let mut throughput =
            TrainingThroughput::from_step_marks(&[0.0, 1.0, 2.0], 1, 1).expect("one timed step");
        assert_eq!(throughput.rss_growth_mib(), None);
        throughput.rss = vec![
            RssSample {
                step: 10,
                rss_mib: 100.0,
            },
            RssSample {
                step: 20,
                rss_mib: 101.5,
            },
        ];
        assert!((throughput.rss_growth_mib().unwrap() - 1.5).abs() < 1e-12);
    }

    fn training(samples_per_second: f64, mean_halting_step: f64) -> TrainingThroughput {
        TrainingThroughput {
            timed_steps: 4,
            seconds: 1.0,
            samples_per_second,
            median_step_ms: 250.0,
            mean_halting_step,
            rss: Vec::new(),
            peak_rss_mib: Some(50.0),
        }
    }

    /// Writes a record of `workload` with a fixed spec and 2 threads.
    fn write_record(
        directory: &Path,
        implementation: &str,
        workload: &str,
        result: serde_json::Value,
    ) {
        let mut value = serde_json::json!({
            "implementation": implementation,
            "workload": workload,
            "threads": 2,
            "backend": "flex",
            "kernel": "fused",
            "spec": {"batch_size": 128, "timed_steps": 4},
        });
        value
            .as_object_mut()
            .unwrap()
            .extend(result.as_object().unwrap().clone());
        let name = format!("{implementation}-{workload}.json");
        std::fs::write(directory.join(name), value.to_string()).unwrap();
    }

    fn exits(agreement: Option<f64>) -> serde_json::Value {
        let mut fast = timing(3.0, 10.0, Some(0.25));
        fast.exit_layer_agreement = agreement;
        let mut single = timing(0.2, 0.5, Some(0.25));
        single.exit_layer_agreement = agreement;
        serde_json::to_value(InferenceThroughput {
            batches: BTreeMap::from([("256".to_owned(), fast), ("1".to_owned(), single)]),
            peak_rss_mib: None,
        })
        .unwrap()
    }

    #[test]
    fn report_pairs_records() {
        let directory = tempfile::tempdir().unwrap();
        let dir = directory.path();
        let to_value = |throughput| serde_json::to_value(throughput).unwrap();
        write_record(dir, "haltlab", "act", to_value(training(300.0, 20.0)));
        write_record(dir, "pytorch", "act", to_value(training(200.0, 20.0)));
        write_record(dir, "haltlab", "exits", exits(None));
        write_record(dir, "pytorch", "exits", exits(Some(1.0)));

        let report = BenchReport::from_directory(dir).unwrap();
        assert_eq!(report.threads, vec![2]);
        assert_eq!(report.kernel.as_deref(), Some("fused"));
        let training = report.training.as_ref().expect("both act records");
        assert!((training.speed_ratio - 1.5).abs() < 1e-12);
        let batch_sizes: Vec<&str> = report
            .inference
            .iter()
            .map(|comparison| comparison.batch_size.as_str())
            .collect();
        assert_eq!(batch_sizes, ["1", "256"]);
        // Both sides have the same timings here, so haltlab ÷ PyTorch is 1.
        assert!((report.inference[0].speed_ratio.unwrap() - 1.0).abs() < 1e-12);
        assert!((report.inference[0].time_to_flop_ratio.unwrap() - 1.6).abs() < 1e-12);
        let text = report.to_text();
        assert!(text.contains("goal ≥ 1.5×: met"), "{text}");
        assert!(text.contains("goal ≤ 1.15: not met"), "{text}");
        assert!(!text.contains("warning"), "{text}");
        assert!(
            text.contains("early-exit inference: haltlab -, PyTorch -"),
            "{text}"
        );
    }

    #[test]
    fn report_warns_about_unlike_work() {
        let directory = tempfile::tempdir().unwrap();
        let dir = directory.path();
        let to_value = |throughput| serde_json::to_value(throughput).unwrap();
        write_record(dir, "haltlab", "act", to_value(training(300.0, 20.0)));
        write_record(dir, "pytorch", "act", to_value(training(200.0, 12.0)));
        write_record(dir, "haltlab", "exits", exits(None));
        write_record(dir, "pytorch", "exits", exits(Some(0.3)));
        let text = BenchReport::from_directory(dir).unwrap().to_text();
        assert!(
            text.contains("mean halting steps differ (20.00 against 12.00)"),
            "{text}"
        );
        assert!(
            text.contains("at batch 1 the reference took haltlab's exit head for only 30.0%"),
            "{text}"
        );
    }

    #[test]
    fn report_rejects_incomplete_or_mismatched_records() {
        let directory = tempfile::tempdir().unwrap();
        let dir = directory.path();
        let to_value = |throughput| serde_json::to_value(throughput).unwrap();
        write_record(dir, "haltlab", "act", to_value(training(300.0, 20.0)));
        let error = BenchReport::from_directory(dir).unwrap_err().to_string();
        assert!(error.contains("pytorch-act.json not found"), "{error}");
        assert!(error.contains("bench/reference.py act"), "{error}");

        std::fs::write(dir.join("pytorch-act.json"), "{\"x\": 1}").unwrap();
        let error = BenchReport::from_directory(dir).unwrap_err().to_string();
        assert!(error.contains("is not a benchmark record"), "{error}");

        write_record(dir, "pytorch", "act", to_value(training(200.0, 20.0)));
        let mut other = serde_json::from_str::<serde_json::Value>(
            &std::fs::read_to_string(dir.join("pytorch-act.json")).unwrap(),
        )
        .unwrap();
        other["spec"]["timed_steps"] = serde_json::json!(30);
        std::fs::write(dir.join("pytorch-act.json"), other.to_string()).unwrap();
        let error = BenchReport::from_directory(dir).unwrap_err().to_string();
        assert!(error.contains("spec differs"), "{error}");

        other["spec"]["timed_steps"] = serde_json::json!(4);
        other["threads"] = serde_json::json!(1);
        std::fs::write(dir.join("pytorch-act.json"), other.to_string()).unwrap();
        let error = BenchReport::from_directory(dir).unwrap_err().to_string();
        assert!(error.contains("1 threads and haltlab on 2"), "{error}");
    }

    #[test]
    fn report_without_records_fails() {
        let directory = tempfile::tempdir().unwrap();
        let error = BenchReport::from_directory(directory.path()).unwrap_err();
        assert!(
            error.to_string().contains("no benchmark records"),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("haltlab bench act experiments/bench_act.toml"),
            "{error}"
        );
        let missing = directory.path().join("absent");
        let error = BenchReport::from_directory(&missing).unwrap_err();
        assert!(
            error.to_string().contains("results/bench/<time>/"),
            "{error}"
        );
    }
}
