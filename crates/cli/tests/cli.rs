//! End-to-end tests of the `haltlab` binary: rejected input writes nothing, errors name the
//! problem, and Ctrl-C followed by `--resume` completes a run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn haltlab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_haltlab"))
}

fn run(args: &[&str], results: &Path) -> Output {
    haltlab()
        .args(args)
        .arg("--results")
        .arg(results)
        .arg("--quiet")
        .output()
        .expect("haltlab runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write_recipe(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Returns the repository root, found when the test runs: a test binary reused from a shared
/// build cache keeps the compile-time `CARGO_MANIFEST_DIR` of the checkout that built it.
fn repository_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../..")
}

fn is_empty_dir(path: &Path) -> bool {
    !path.exists() || std::fs::read_dir(path).unwrap().next().is_none()
}

const MNIST: &str = r#"
[mnist]
format = "csv"
[exits]
hidden_sizes = [16, 16]
threshold = 0.9
[training]
epochs = 1
batch_size = 32
learning_rate = 0.001
"#;

const PARITY: &str = r#"
seed = 2
[parity]
length = 4
train_nonzeros = [1, 4]
eval_nonzeros = [1, 4]
eval_samples = 100
validation_samples = 50
[ponder]
hidden_size = 8
[halting]
method = "act"
max_steps = 3
ponder_weight = 0.01
[training]
epochs = 2
steps_per_epoch = 3
batch_size = 8
learning_rate = 0.01
"#;

#[test]
fn rejected_recipe_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let recipe = write_recipe(
        dir.path(),
        "bad.toml",
        &PARITY.replace("max_steps = 3", "max_steps = 0"),
    );
    let output = run(&["run", recipe.to_str().unwrap()], &results);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("halting.max_steps"), "{message}");
    assert!(message.contains("bad.toml"), "{message}");
    assert!(
        is_empty_dir(&results),
        "results written for a rejected recipe"
    );
}

#[test]
fn missing_data_file_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let missing = dir.path().join("no-such-mnist.csv.gz");
    let recipe = write_recipe(dir.path(), "mnist.toml", MNIST);
    let output = run(
        &[
            "run",
            recipe.to_str().unwrap(),
            "--data",
            missing.to_str().unwrap(),
        ],
        &results,
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("no-such-mnist.csv.gz"), "{message}");
    assert!(is_empty_dir(&results));
}

#[test]
fn unreadable_data_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let garbage = write_recipe(dir.path(), "garbage.csv", "1,2,3\nnot numbers\n");
    let recipe = write_recipe(dir.path(), "mnist.toml", MNIST);
    let output = run(
        &[
            "run",
            recipe.to_str().unwrap(),
            "--data",
            garbage.to_str().unwrap(),
        ],
        &results,
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("garbage.csv"), "{message}");
    assert!(message.contains("line 1"), "{message}");
    assert!(is_empty_dir(&results));
}

#[test]
fn missing_shift_data_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let text = MNIST.replace(
        "format = \"csv\"",
        "format = \"csv\"\nuci_digits_path = \"no-such-uci.csv.gz\"",
    );
    let recipe = write_recipe(dir.path(), "mnist.toml", &text);
    let data = repository_root().join("../shared/data/mnist_5k.csv.gz");
    let data = data.to_str().unwrap();
    let output = run(&["run", recipe.to_str().unwrap(), "--data", data], &results);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no-such-uci.csv.gz"),
        "{}",
        stderr(&output)
    );
    assert!(is_empty_dir(&results));
}

#[test]
fn backend_not_compiled_names_alternatives() {
    if cfg!(feature = "cuda") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(dir.path(), "parity.toml", PARITY);
    let output = run(
        &["run", recipe.to_str().unwrap(), "--backend", "cuda"],
        &dir.path().join("results"),
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("`cuda` is not compiled"), "{message}");
    assert!(message.contains("--backend flex"), "{message}");
}

#[test]
fn backends_lists_flex() {
    let output = haltlab().arg("backends").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.lines()
            .any(|line| line.starts_with("flex") && line.contains("yes")),
        "{text}"
    );
    assert!(text.contains("--backend defaults to flex"), "{text}");
}

#[test]
fn run_writes_result_files() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let recipe = write_recipe(dir.path(), "tiny.toml", PARITY);
    let output = run(&["run", recipe.to_str().unwrap()], &results);
    assert!(output.status.success(), "{}", stderr(&output));
    let runs: Vec<_> = std::fs::read_dir(results.join("tiny"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(runs[0].join("result.json")).unwrap())
            .unwrap();
    assert_eq!(result["schema_version"], 1);
    assert_eq!(result["status"]["state"], "completed");
    assert_eq!(result["backend"], "flex");
    // The PARITY recipe trains ACT with the default kernel, which is the fused one on flex.
    assert_eq!(result["act_kernel"], "fused");
    assert_eq!(result["seed"], 2);
    assert_eq!(result["history"].as_array().unwrap().len(), 2);
    assert!(result["evaluation"]["test"]["accuracy"].is_number());
    let history = std::fs::read_to_string(runs[0].join("history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 2);
    assert!(runs[0].join("recipe.toml").is_file());
    assert!(runs[0].join("checkpoint/state.json").is_file());
}

#[test]
fn interrupt_then_resume() {
    // ACT, and REINFORCE with a learned baseline, whose loop draws noise and trains a second
    // module.
    let reinforce =
        "method = \"reinforce\"\nmax_steps = 3\nponder_weight = 0.01\nbaseline = \"learned\"";
    for (name, halting) in [("long_act", None), ("long_reinforce", Some(reinforce))] {
        interrupt_then_resume_run(name, halting);
    }
}

/// Interrupts a long parity run named `name` with SIGINT after its first epoch, then resumes
/// it for one more epoch. A `halting` body replaces the ACT one of [`PARITY`].
fn interrupt_then_resume_run(name: &str, halting: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    // Long enough that the interrupt arrives during training.
    let mut text = PARITY
        .replace("epochs = 2", "epochs = 400")
        .replace("steps_per_epoch = 3", "steps_per_epoch = 400");
    if let Some(halting) = halting {
        text = text.replace(
            "method = \"act\"\nmax_steps = 3\nponder_weight = 0.01",
            halting,
        );
        assert!(text.contains(halting));
    }
    let recipe = write_recipe(dir.path(), &format!("{name}.toml"), &text);
    let mut child = haltlab()
        .args(["run", recipe.to_str().unwrap(), "--quiet", "--results"])
        .arg(&results)
        .spawn()
        .unwrap();

    // Wait until the first epoch has been recorded, then send SIGINT as Ctrl-C does.
    let deadline = Instant::now() + Duration::from_secs(60);
    let run_dir = loop {
        assert!(Instant::now() < deadline, "no epoch recorded within 60 s");
        let found = std::fs::read_dir(results.join(name))
            .ok()
            .and_then(|mut entries| entries.next())
            .map(|entry| entry.unwrap().path());
        if let Some(run_dir) = found {
            if std::fs::read_to_string(run_dir.join("history.jsonl"))
                .is_ok_and(|text| !text.is_empty())
            {
                break run_dir;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "exit status {status:?}");

    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("result.json")).unwrap())
            .unwrap();
    assert_eq!(result["status"]["state"], "interrupted", "{result}");
    assert!(run_dir.join("checkpoint/state.json").is_file());

    // Shorten the remaining work to one more epoch: the resumed run reads the recipe saved in
    // the run directory.
    let epochs_done = result["history"].as_array().unwrap().len();
    let saved = std::fs::read_to_string(run_dir.join("recipe.toml")).unwrap();
    let shortened = saved.replace("epochs = 400", &format!("epochs = {}", epochs_done + 1));
    std::fs::write(run_dir.join("recipe.toml"), shortened).unwrap();
    let output = haltlab()
        .args(["run", "--quiet", "--resume"])
        .arg(&run_dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("result.json")).unwrap())
            .unwrap();
    assert_eq!(result["status"]["state"], "completed");
    assert_eq!(result["history"].as_array().unwrap().len(), epochs_done + 1);
}

/// Runs `haltlab compare` on `set` with `jobs` threads, writing under `results`.
fn run_compare(set: &Path, jobs: &str, results: &Path) -> Output {
    haltlab()
        .args([
            "compare",
            set.to_str().unwrap(),
            "--jobs",
            jobs,
            "--results",
        ])
        .arg(results)
        .output()
        .unwrap()
}

/// Runs `haltlab compare` on `set` with `jobs` threads and returns the parsed comparison.json
/// and the Markdown table.
fn compare(set: &Path, jobs: &str, results: &Path) -> (serde_json::Value, String) {
    let output = run_compare(set, jobs, results);
    assert!(output.status.success(), "{}", stderr(&output));
    let dir = std::fs::read_dir(results.join("set"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let json = std::fs::read_to_string(dir.join("comparison.json")).unwrap();
    let markdown = std::fs::read_to_string(dir.join("comparison.md")).unwrap();
    (serde_json::from_str(&json).unwrap(), markdown)
}

// Two methods over two seeds on both settings: the table has a row per method with every
// column, a method's own `epochs` overrides the set's, and training on two threads gives the
// same numbers as on one.
#[test]
fn compare_table_same_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    write_recipe(dir.path(), "act.toml", PARITY);
    write_recipe(
        dir.path(),
        "pondernet.toml",
        &PARITY.replace(
            "method = \"act\"\nmax_steps = 3\nponder_weight = 0.01",
            "method = \"pondernet\"\nmax_steps = 3\nlambda_prior = 0.3\nkl_weight = 0.01",
        ),
    );
    let set = write_recipe(
        dir.path(),
        "set.toml",
        "seeds = [1, 2]\nepochs = 1\nmethods = [\n\
         { name = \"act\", recipe = \"act.toml\", epochs = 2 },\n\
         { name = \"pondernet\", recipe = \"pondernet.toml\" },\n]\n",
    );
    let (one, markdown) = compare(&set, "1", &dir.path().join("one"));
    let (two, _) = compare(&set, "2", &dir.path().join("two"));

    for column in [
        "accuracy (%)",
        "halting steps",
        "steps to 99% (reached)",
        "extrapolation accuracy (%)",
        "extrapolation steps",
        "failure flags",
    ] {
        assert!(markdown.contains(column), "no column {column}: {markdown}");
    }
    assert!(markdown.contains("| act |"), "{markdown}");
    assert!(markdown.contains("| pondernet |"), "{markdown}");
    // Steps per epoch are 3, so ACT's own 2 epochs end at step 6 and PonderNet's one epoch,
    // from the set, at step 3.
    let rows = one["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, steps) in rows.iter().zip([6, 3]) {
        for setting in ["interpolation", "extrapolation"] {
            let runs = row[setting].as_array().unwrap();
            let seeds: Vec<u64> = runs
                .iter()
                .map(|run| run["seed"].as_u64().unwrap())
                .collect();
            assert_eq!(seeds, [1, 2], "{setting}");
            for run in runs {
                assert_eq!(run["training_steps"], steps, "{}", row["method"]);
            }
        }
    }

    // Every field but the wall-clock times must match across thread counts.
    let strip = |value: &serde_json::Value| {
        let mut rows = value["rows"].clone();
        for row in rows.as_array_mut().unwrap() {
            for setting in ["interpolation", "extrapolation"] {
                for run in row[setting].as_array_mut().unwrap() {
                    run["training_seconds"] = serde_json::Value::Null;
                }
            }
        }
        rows
    };
    assert_eq!(strip(&one), strip(&two));
}

// Each bad comparison set or option is rejected before any training, with a message that
// names the problem, and writes nothing.
#[test]
fn compare_rejects_bad_sets() {
    let dir = tempfile::tempdir().unwrap();
    write_recipe(dir.path(), "act.toml", PARITY);
    let methods = "methods = [{ name = \"act\", recipe = \"act.toml\" }]\n";
    let cases = [
        (format!("seeds = [3, 1, 1]\n{methods}"), "1", "seed twice"),
        (format!("seeds = [1]\n{methods}"), "0", "--jobs 0"),
        (
            "seeds = [1]\nmethods = [{ name = \"act\", recipe = \"act.toml\", epochs = 0 }]\n"
                .to_owned(),
            "1",
            "method act of comparison set",
        ),
    ];
    for (text, jobs, expected) in cases {
        let set = write_recipe(dir.path(), "set.toml", &text);
        let results = dir.path().join("results");
        let output = run_compare(&set, jobs, &results);
        assert!(!output.status.success(), "accepted {text}");
        let message = stderr(&output);
        assert!(message.contains(expected), "{text}: {message}");
        assert!(is_empty_dir(&results), "{text} wrote results");
    }
}

/// Writes `set` as an IDX image file and an IDX label file (big-endian headers, magic 0x803
/// and 0x801, one unsigned byte per pixel or label).
fn write_idx(dir: &Path, prefix: &str, set: &haltlab_data::images::ImageSet, rows: &[usize]) {
    let pixels_per_image = set.height * set.width;
    let count = rows.len() as u32;
    let mut images = Vec::new();
    for header in [0x0803, count, set.height as u32, set.width as u32] {
        images.extend_from_slice(&u32::to_be_bytes(header));
    }
    let mut labels = Vec::new();
    for header in [0x0801, count] {
        labels.extend_from_slice(&u32::to_be_bytes(header));
    }
    for &row in rows {
        let image = &set.pixels[row * pixels_per_image..(row + 1) * pixels_per_image];
        images.extend(image.iter().map(|&value| (value * 255.0).round() as u8));
        labels.push(set.labels[row]);
    }
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
}

// The shipped IDX recipe (B-LeNet with one branch) runs end to end on IDX files made from the
// MNIST sample: every 5th image (1,000) for training and validation, and every 25th from the
// third on (200) as the test set. The sample is sorted by label, so strides cover all ten
// digits. One epoch and a short latency measurement keep it fast; the UCI path is made
// absolute.
#[test]
fn idx_lenet_recipe_runs() {
    let root = repository_root();
    let shared = root.join("../shared/data");
    let sample = haltlab_data::images::load_csv(
        &shared.join("mnist_5k.csv.gz"),
        haltlab_data::images::CsvLayout::MNIST,
    )
    .expect("the MNIST sample in ../shared/data loads");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("idx");
    std::fs::create_dir(&data).unwrap();
    let train: Vec<usize> = (0..sample.len()).step_by(5).collect();
    let test: Vec<usize> = (2..sample.len()).step_by(25).collect();
    write_idx(&data, "train", &sample, &train);
    write_idx(&data, "t10k", &sample, &test);

    let shipped = std::fs::read_to_string(root.join("experiments/mnist_lenet_idx.toml")).unwrap();
    let uci = shared.join("uci_digits.csv.gz");
    let text = shipped
        .replace("epochs = 10", "epochs = 1")
        .replace("latency_samples = 1000", "latency_samples = 20")
        .replace(
            "\"../shared/data/uci_digits.csv.gz\"",
            &format!("{:?}", uci.to_str().unwrap()),
        );
    assert_ne!(text, shipped);
    let recipe = write_recipe(dir.path(), "mnist_lenet_idx.toml", &text);
    let results = dir.path().join("results");
    let output = run(
        &[
            "run",
            recipe.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
        &results,
    );
    assert!(output.status.success(), "{}", stderr(&output));

    let run_dir = std::fs::read_dir(results.join("mnist_lenet_idx"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("result.json")).unwrap())
            .unwrap();
    assert_eq!(result["status"]["state"], "completed", "{result}");
    let test = &result["evaluation"]["test"];
    assert_eq!(test["samples"], 200, "{test}");
    // Ten classes: one epoch on 900 images must beat guessing (10%) by a wide margin.
    let accuracy = test["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.5, "test accuracy {accuracy}: {result}");
    // Two exits: the branch after the first convolution block and the main head.
    let report = &test["exit_report"];
    assert_eq!(
        report["layer_flops"].as_array().unwrap().len(),
        2,
        "{report}"
    );
    // The recipe's UCI digits path was read, so its shift is reported next to the generated
    // ones.
    let shifts = report["shifts"].as_object().unwrap();
    assert!(shifts.contains_key("uci_digits"), "{shifts:?}");
    assert!(shifts.contains_key("rotation"), "{shifts:?}");
}

/// Runs `haltlab bench` with `args`.
fn bench(args: &[&str]) -> Output {
    haltlab()
        .arg("bench")
        .args(args)
        .output()
        .expect("haltlab runs")
}

#[test]
fn bench_records_both_workloads() {
    let root = repository_root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let out_arg = out.to_str().unwrap();
    let act_recipe = root.join("experiments/bench_act.toml");
    let output = bench(&[
        "act",
        act_recipe.to_str().unwrap(),
        "--out",
        out_arg,
        "--warmup",
        "2",
        "--steps",
        "3",
        "--threads",
        "2",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let act: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("haltlab-act.json")).unwrap())
            .unwrap();
    assert_eq!(act["timed_steps"], 3, "{act}");
    assert_eq!(act["threads"], 2, "{act}");
    // The halting bias of −10 keeps every sample pondering all 20 steps.
    assert_eq!(act["mean_halting_step"], 20.0, "{act}");
    assert_eq!(act["spec"]["hidden_size"], 128, "{act}");
    assert_eq!(act["spec"]["max_steps"], 20, "{act}");
    assert!(act["samples_per_second"].as_f64().unwrap() > 0.0, "{act}");

    // A small MLP keeps the exit workload short; the data are the real MNIST sample.
    let mnist = root.join("experiments/mnist_exits.toml");
    let text = std::fs::read_to_string(&mnist)
        .unwrap()
        .replace("[1024, 1024, 1024, 1024]", "[32, 32]");
    let small = write_recipe(dir.path(), "mnist_small.toml", &text);
    let data = root.join("../shared/data/mnist_5k.csv.gz");
    let output = bench(&[
        "exits",
        small.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out_arg,
        "--epochs",
        "1",
        "--rounds",
        "1",
        "--threshold",
        "0.5",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let exits: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("haltlab-exits.json")).unwrap())
            .unwrap();
    let spec = &exits["spec"];
    let samples = spec["samples"].as_u64().unwrap() as usize;
    assert_eq!(samples, 1000, "{spec}");
    assert_eq!(spec["exit_layer"].as_array().unwrap().len(), samples);
    // The exported files hold every weight and every test image as f32.
    let weights = std::fs::metadata(out.join("exit-mlp-weights.f32"))
        .unwrap()
        .len();
    let expected_weights = (784 * 32 + 32 + 32 * 32 + 32 + 2 * (32 * 10 + 10)) * 4;
    assert_eq!(weights, expected_weights as u64);
    let inputs = std::fs::metadata(out.join("exit-mlp-test-inputs.f32"))
        .unwrap()
        .len();
    assert_eq!(inputs, (samples * 784 * 4) as u64);
    for batch in ["1", "256"] {
        let timing = &exits["batches"][batch];
        let fraction = timing["flop_fraction"].as_f64().unwrap();
        assert!(fraction > 0.0, "batch {batch}: {timing}");
        assert!(fraction <= 1.0, "batch {batch}: {timing}");
    }

    // Without the reference's records there is nothing to compare, and no bench.json.
    let output = bench(&["report", out_arg]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("pytorch-act.json not found"),
        "{}",
        stderr(&output)
    );
    assert!(!out.join("bench.json").exists());

    // Stand-ins for the reference's records: haltlab's own, under the reference's name.
    for workload in ["act", "exits"] {
        let text = std::fs::read_to_string(out.join(format!("haltlab-{workload}.json"))).unwrap();
        std::fs::write(out.join(format!("pytorch-{workload}.json")), text).unwrap();
    }
    let output = bench(&["report", out_arg]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("ACT kernel: fused"), "{text}");
    assert!(text.contains("hard exits, batch 256"), "{text}");
    assert!(out.join("bench.json").exists());
}

#[test]
fn bench_rejects_other_recipes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench");
    let pondernet = PARITY.replace(
        "method = \"act\"\nmax_steps = 3\nponder_weight = 0.01",
        "method = \"pondernet\"\nmax_steps = 3\nlambda_prior = 0.3\nkl_weight = 0.01",
    );
    assert_ne!(pondernet, PARITY);
    let recipe = write_recipe(dir.path(), "pondernet.toml", &pondernet);
    let output = bench(&[
        "act",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("halting.method is not \"act\""),
        "{}",
        stderr(&output)
    );
    assert!(
        is_empty_dir(&out),
        "a rejected benchmark wrote {}",
        out.display()
    );

    let output = bench(&["report", out.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("haltlab bench"),
        "{}",
        stderr(&output)
    );
}
