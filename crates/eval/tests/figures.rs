//! Tables and figures from result files written to disk, as `haltlab table` and
//! `haltlab plot` read them.

use std::collections::BTreeMap;
use std::path::Path;

use haltlab_eval::plot::plot_runs;
use haltlab_eval::runs::collect_runs;
use haltlab_eval::table::{Format, build_tables, render};
use haltlab_eval::{
    EpochRecord, Evaluation, Histogram, RunResult, RunStatus, SCHEMA_VERSION, SweepPoint,
    write_json_atomic,
};

fn history(depth: usize, epochs: usize) -> Vec<EpochRecord> {
    (1..=epochs)
        .map(|epoch| {
            let mut histogram = Histogram::with_steps(depth);
            histogram.extend((0..20).map(|i| 1 + (i + epoch) % depth));
            EpochRecord {
                epoch,
                step: epoch as u64 * 10,
                loss: 1.0 / epoch as f64,
                accuracy: 0.5 + 0.04 * epoch as f64,
                validation_accuracy: Some(0.5 + 0.05 * epoch as f64),
                mean_halting_step: histogram.mean(),
                halting_histogram: histogram,
                expected_compute: Some(2.0 + 0.1 * epoch as f64),
                elapsed_seconds: epoch as f64,
                ..EpochRecord::default()
            }
        })
        .collect()
}

fn result(recipe: serde_json::Value, name: &str, seed: u64, test: Evaluation) -> RunResult {
    RunResult {
        schema_version: SCHEMA_VERSION,
        status: RunStatus::Completed,
        recipe_name: name.to_owned(),
        recipe_path: format!("experiments/{name}.toml"),
        recipe,
        haltlab_version: "0.1.0".into(),
        burn_version: "0.22.1".into(),
        backend: "flex".into(),
        device: "cpu".into(),
        act_kernel: None,
        seed,
        git_commit: None,
        started_at: "2026-01-01T00:00:00Z".into(),
        wall_seconds: 3.0,
        training_seconds: 2.0,
        history: history(4, 6),
        evaluation: BTreeMap::from([("test".to_owned(), test)]),
    }
}

fn write_fixture(root: &Path) {
    for (method, base) in [("act", 0.9), ("pondernet", 0.8)] {
        for seed in 1..=2u64 {
            let recipe = serde_json::json!({
                "seed": seed,
                "parity": {"length": 8, "train_nonzeros": [1, 8], "eval_nonzeros": [1, 8]},
                "halting": {"method": method}
            });
            let mut histogram = Histogram::with_steps(5);
            histogram.extend([1, 2, 2, 3, 5]);
            let test = Evaluation {
                samples: 5,
                accuracy: base + 0.01 * seed as f64,
                halting_step_by_difficulty: (1..=8).map(|k| (k, 1.0 + k as f64 / 4.0)).collect(),
                ..Evaluation::default()
            }
            .with_histogram(histogram);
            let name = format!("parity_{method}");
            let dir = root.join(&name).join(format!("run-seed{seed}"));
            std::fs::create_dir_all(&dir).unwrap();
            write_json_atomic(&dir.join("result.json"), &result(recipe, &name, seed, test))
                .unwrap();
        }
    }
    let recipe = serde_json::json!({
        "seed": 1, "mnist": {"format": "csv"},
        "exits": {"hidden_sizes": [8, 8, 8], "threshold": 0.9}
    });
    let mut histogram = Histogram::with_steps(3);
    histogram.extend([1, 1, 2, 3]);
    let test = Evaluation {
        samples: 4,
        accuracy: 0.93,
        threshold: Some(0.9),
        flop_fraction: Some(0.55),
        sweep: vec![
            SweepPoint {
                threshold: 0.5,
                accuracy: 0.85,
                flop_fraction: 0.35,
            },
            SweepPoint {
                threshold: 0.99,
                accuracy: 0.95,
                flop_fraction: 0.9,
            },
        ],
        ..Evaluation::default()
    }
    .with_histogram(histogram);
    let dir = root.join("mnist_exits").join("run-seed1");
    std::fs::create_dir_all(&dir).unwrap();
    write_json_atomic(
        &dir.join("result.json"),
        &result(recipe, "mnist_exits", 1, test),
    )
    .unwrap();
}

#[test]
fn every_figure_is_a_non_empty_valid_svg_and_png() {
    let root = tempfile::tempdir().unwrap();
    write_fixture(root.path());
    let runs = collect_runs(&[root.path().display().to_string()]).unwrap();
    assert_eq!(runs.len(), 5);
    let out = root.path().join("figures");
    let written = plot_runs(&runs, &out).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "parity_accuracy_compute.svg",
        "parity_halting_histogram.png",
        "parity_halting_by_difficulty.svg",
        "parity_training.png",
        "parity_halting_heatmap_act.png",
        "parity_halting_heatmap_pondernet.svg",
        "mnist_accuracy_compute.png",
        "mnist_halting_histogram.svg",
        "mnist_training.svg",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    for path in &written {
        let bytes = std::fs::read(path).unwrap();
        assert!(
            bytes.len() > 1000,
            "{} is only {} bytes",
            path.display(),
            bytes.len()
        );
        if path.extension().unwrap() == "svg" {
            let text = String::from_utf8(bytes).unwrap();
            assert!(text.trim_start().starts_with("<svg"), "{}", path.display());
            assert!(text.trim_end().ends_with("</svg>"), "{}", path.display());
            assert!(text.contains("<text"), "{} has no text", path.display());
        } else {
            let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
            let mut reader = decoder.read_info().unwrap();
            let mut pixels = vec![0; reader.output_buffer_size()];
            let frame = reader.next_frame(&mut pixels).unwrap();
            assert!(frame.width >= 800 && frame.height >= 500);
            // Not a blank canvas: some pixels are far from white.
            let dark = pixels
                .chunks(3)
                .filter(|p| p.iter().all(|&c| c < 128))
                .count();
            assert!(dark > 100, "{} looks blank", path.display());
        }
    }
}

#[test]
fn tables_read_result_files_from_directories_and_globs() {
    let root = tempfile::tempdir().unwrap();
    write_fixture(root.path());
    let pattern = format!("{}/parity_*/*/result.json", root.path().display());
    let runs = collect_runs(&[pattern]).unwrap();
    assert_eq!(runs.len(), 4);
    let tables = build_tables(&runs, None);
    let markdown = render(&tables, Format::Markdown);
    // act: 91 % and 92 % → 91.50 ± 0.71; steps to 99 % never reached → dash.
    let act = markdown.lines().find(|l| l.contains("| act |")).unwrap();
    assert!(act.contains("| 91.50 ± 0.71 |"), "{act}");
    assert!(act.contains("| - |"), "{act}");
}

#[test]
fn unknown_schema_versions_are_rejected_with_the_version_and_file() {
    let root = tempfile::tempdir().unwrap();
    write_fixture(root.path());
    let path = root.path().join("parity_act/run-seed1/result.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let newer = text.replacen(
        &format!("\"schema_version\": {SCHEMA_VERSION}"),
        "\"schema_version\": 7",
        1,
    );
    assert_ne!(text, newer);
    std::fs::write(&path, newer).unwrap();
    let error = collect_runs(&[root.path().display().to_string()])
        .unwrap_err()
        .to_string();
    assert!(error.contains("schema version 7"), "{error}");
    assert!(
        error.contains("parity_act/run-seed1/result.json"),
        "{error}"
    );
}

#[test]
fn inputs_that_match_nothing_are_reported() {
    let error = collect_runs(&["/no/such/results/*.json".to_owned()])
        .unwrap_err()
        .to_string();
    assert!(error.contains("/no/such/results/*.json"), "{error}");
}
