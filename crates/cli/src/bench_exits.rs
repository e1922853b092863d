//! `haltlab bench-exits`: trains an early-exit recipe, then prints measured wall time against
//! the counted FLOP fraction of its calibrated threshold.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use haltlab_eval::bench::EXIT_TIME_GOAL;
use haltlab_eval::{ComputeReport, ExitReport, RunResult};

use crate::run::{RunArgs, run};

/// Runs the recipe like `haltlab run`, then prints the compute table of its test split.
pub fn bench_exits(args: &RunArgs) -> Result<PathBuf> {
    let (_, result_path) = run(args)?;
    let text = std::fs::read_to_string(&result_path)
        .with_context(|| format!("failed to read {}", result_path.display()))?;
    let result: RunResult = serde_json::from_str(&text)
        .with_context(|| format!("failed to parse {}", result_path.display()))?;
    let Some(report) = result
        .evaluation
        .get("test")
        .and_then(|test| test.exit_report.as_ref())
    else {
        bail!(
            "{} has no early-exit report; bench-exits needs an [mnist] recipe with [exits]",
            result_path.display()
        );
    };
    print_calibrated(report);
    print_shifts(report);
    let Some(compute) = &report.compute else {
        bail!("no latency was measured: set exits.latency_samples above 0");
    };
    print_compute(compute);
    Ok(result_path)
}

fn print_calibrated(report: &ExitReport) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\ncalibrated on validation, results on test:");
    let _ = writeln!(
        out,
        "{:<11} {:<16} {:>7} {:>10} {:>9} {:>9} {:>10}",
        "rule", "criterion", "target", "threshold", "accuracy", "FLOPs", "mean exit"
    );
    for choice in &report.calibrated {
        if let Some(test) = &choice.test {
            let _ = writeln!(
                out,
                "{:<11} {:<16} {:>7} {:>10.4} {:>8.2}% {:>8.1}% {:>10.2}",
                choice.rule,
                choice.criterion,
                choice.target,
                choice.threshold,
                test.accuracy * 100.0,
                test.flop_fraction * 100.0,
                test.mean_exit_layer
            );
        }
    }
}

fn print_shifts(report: &ExitReport) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\nshifted test sets (accuracy, FLOPs, exit shares per layer):"
    );
    for (name, shift) in &report.shifts {
        let per_exit: Vec<String> = shift
            .accuracy_per_exit
            .iter()
            .map(|accuracy| format!("{:.1}", accuracy * 100.0))
            .collect();
        let _ = writeln!(
            out,
            "{name}: {}; per-exit accuracy {}",
            shift.description,
            per_exit.join(" / ")
        );
        for point in &shift.points {
            let shares: Vec<String> = point
                .exit_shares
                .iter()
                .map(|share| format!("{:.0}", share * 100.0))
                .collect();
            let _ = writeln!(
                out,
                "  {} {:.4}: accuracy {:.2}%, FLOPs {:.1}%, exits % {}",
                point.rule,
                point.threshold,
                point.accuracy * 100.0,
                point.flop_fraction * 100.0,
                shares.join(" / ")
            );
        }
    }
}

fn print_compute(compute: &ComputeReport) {
    let mut out = std::io::stdout().lock();
    let fraction = compute.counted_flop_fraction;
    let _ = writeln!(
        out,
        "\n{} threshold {:.4}: counted FLOP fraction {:.3} (validation predicted {:.3}), mean layers {:.2}",
        compute.rule,
        compute.threshold,
        fraction,
        compute.validation_flop_fraction,
        compute.mean_layers
    );
    let _ = writeln!(
        out,
        "{:<12} {:>11} {:>11} {:>9} {:>9} {:>9} {:>9} {:>14}",
        "batch", "full p50", "exits p50", "mean", "p90", "p99", "max", "time/FLOP frac"
    );
    for (label, full, exits, time_fraction) in [
        (
            "1".to_owned(),
            &compute.batch1_full,
            &compute.batch1_exits,
            compute.batch1_time_fraction,
        ),
        (
            compute.batch_size.to_string(),
            &compute.batched_full,
            &compute.batched_exits,
            compute.batched_time_fraction,
        ),
    ] {
        let ratio = if fraction > 0.0 {
            time_fraction / fraction
        } else {
            f64::INFINITY
        };
        let verdict = if ratio <= EXIT_TIME_GOAL {
            "within"
        } else {
            "above"
        };
        let _ = writeln!(
            out,
            "{:<12} {:>11.3} {:>11.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8.3} ({verdict} {EXIT_TIME_GOAL})",
            label,
            full.p50_ms,
            exits.p50_ms,
            exits.mean_ms,
            exits.p90_ms,
            exits.p99_ms,
            exits.max_ms,
            ratio
        );
    }
    let _ = writeln!(
        out,
        "times in ms per call; time/FLOP frac = (median exit time / median full time) / FLOP fraction;\nmean–max are the exit calls' latency"
    );
}
