//! Determinism, checkpoint/resume and numerical-fault handling of the training loops, on a
//! parity recipe small enough to train in a few seconds.

use std::path::Path;

use burn::tensor::Device;
use haltlab_eval::EpochRecord;
use haltlab_training::{
    Checkpointer, Monitor, Recipe, RunContext, SilentMonitor, TrainingError, TrainingOutcome,
    pondering,
};

const SMALL_PARITY: &str = r#"
seed = 3
[parity]
length = 4
train_nonzeros = [1, 4]
eval_nonzeros = [1, 4]
eval_samples = 200
validation_samples = 100
[ponder]
cell = "gru"
hidden_size = 16
[halting]
method = "act"
max_steps = 4
ponder_weight = 0.01
[training]
epochs = 3
steps_per_epoch = 5
batch_size = 16
learning_rate = 0.01
"#;

/// Burn's flex backend seeds one random generator for the whole process, so tests that
/// initialise models from a seed and compare the results run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn recipe(text: &str) -> Recipe {
    let recipe = Recipe::parse(text, Path::new("test.toml")).expect("test recipe parses");
    recipe
        .validate(Path::new("test.toml"))
        .expect("test recipe is valid");
    recipe
}

fn train(
    recipe: &Recipe,
    checkpoints: Option<Checkpointer>,
    resume: bool,
    monitor: &mut dyn Monitor,
) -> Result<TrainingOutcome, TrainingError> {
    pondering::train(
        recipe,
        RunContext {
            device: Device::flex(),
            monitor,
            checkpoints,
            resume,
        },
    )
}

/// Everything of an epoch record except the wall-clock time.
fn metrics(history: &[EpochRecord]) -> Vec<EpochRecord> {
    history
        .iter()
        .map(|record| EpochRecord {
            elapsed_seconds: 0.0,
            ..record.clone()
        })
        .collect()
}

/// Requests a stop once `stop_after` steps have run, as Ctrl-C does.
struct StopAfter {
    stop_after: u64,
    last_step: u64,
}

impl Monitor for StopAfter {
    fn step(&mut self, step: u64, _loss: f64) {
        self.last_step = step;
    }

    fn stop_requested(&self) -> bool {
        self.last_step >= self.stop_after
    }
}

/// `[halting]` sections of every parity method, with the extra sections they need; each
/// replaces the ACT section of [`SMALL_PARITY`].
const METHODS: [(&str, &str); 5] = [
    ("act", ""),
    (
        "method = \"pondernet\"\nmax_steps = 4\nlambda_prior = 0.3\nkl_weight = 0.01",
        "",
    ),
    (
        "method = \"gumbel\"\nmax_steps = 4\nponder_weight = 0.01",
        "[schedule.temperature]\nshape = \"cosine\"\nstart = 1.0\nend = 0.1\nend_step = 15\n\
         [schedule.regulariser]\nshape = \"linear\"\nstart = 0.0\nend = 1.0\nstart_step = 3\nend_step = 9",
    ),
    (
        "method = \"reinforce\"\nmax_steps = 4\nponder_weight = 0.01",
        "",
    ),
    (
        "method = \"reinforce\"\nmax_steps = 4\nponder_weight = 0.01\nbaseline = \"learned\"",
        "",
    ),
];

/// [`SMALL_PARITY`] with a `[halting]` section and extra sections from [`METHODS`] and a
/// cosine learning-rate decay, so that the resume tests also cover the schedules.
fn method_recipe(halting: &str, extra: &str) -> Recipe {
    let mut text = SMALL_PARITY.replace(
        "learning_rate = 0.01\n",
        "learning_rate = 0.01\nlearning_rate_decay = \"cosine\"\nfinal_learning_rate = 0.001\n",
    );
    if halting != "act" {
        let start = text.find("method = \"act\"").unwrap();
        let end = text.find("[training]").unwrap();
        text.replace_range(start..end, &format!("{halting}\n"));
    }
    text.push_str(extra);
    recipe(&text)
}

#[test]
fn same_seed_same_metrics() {
    let _serial = serial();
    for (method, extra) in METHODS {
        let recipe = method_recipe(method, extra);
        let first = train(&recipe, None, false, &mut SilentMonitor).unwrap();
        let second = train(&recipe, None, false, &mut SilentMonitor).unwrap();
        assert_eq!(
            metrics(&first.history),
            metrics(&second.history),
            "{method}"
        );
        assert_eq!(first.evaluation, second.evaluation, "{method}");
    }
}

#[test]
fn resumed_run_matches_uninterrupted() {
    let _serial = serial();
    for (method, extra) in METHODS {
        let recipe = method_recipe(method, extra);
        let uninterrupted = train(&recipe, None, false, &mut SilentMonitor).unwrap();

        let run_dir = tempfile::tempdir().unwrap();
        // Stop in the middle of epoch 2 (step 7 of 15), so the partial epoch sums must
        // survive.
        let mut stopper = StopAfter {
            stop_after: 7,
            last_step: 0,
        };
        let interrupted = train(
            &recipe,
            Some(Checkpointer::new(run_dir.path(), None)),
            false,
            &mut stopper,
        );
        match interrupted {
            Err(TrainingError::Interrupted { epoch, step }) => {
                assert_eq!((epoch, step), (2, 7), "{method}");
            }
            other => panic!("{method}: expected an interruption, got {other:?}"),
        }
        assert!(
            run_dir.path().join("checkpoint/state.json").is_file(),
            "{method}"
        );

        let resumed = train(
            &recipe,
            Some(Checkpointer::new(run_dir.path(), None)),
            true,
            &mut SilentMonitor,
        )
        .unwrap();
        assert_eq!(
            metrics(&resumed.history),
            metrics(&uninterrupted.history),
            "{method}"
        );
        assert_eq!(resumed.evaluation, uninterrupted.evaluation, "{method}");
        // Each epoch logs the rate of its last update, here the cosine from 0.01 (step 0) to
        // 0.001 (step 15) at step 14.
        let logged = resumed.history[2].schedule["learning_rate"];
        let expected = 0.001 + 0.009 * (1.0 + (std::f64::consts::PI * 14.0 / 15.0).cos()) / 2.0;
        assert!((logged - expected).abs() < 1e-12, "{method}: {logged}");
    }
}

#[test]
fn resume_without_checkpoint_fails() {
    let _serial = serial();
    let recipe = recipe(SMALL_PARITY);
    let run_dir = tempfile::tempdir().unwrap();
    let error = train(
        &recipe,
        Some(Checkpointer::new(run_dir.path(), None)),
        true,
        &mut SilentMonitor,
    )
    .unwrap_err();
    assert!(matches!(error, TrainingError::Checkpoint { .. }), "{error}");
    assert!(error.to_string().contains("state.json"), "{error}");
}

#[test]
fn non_finite_loss_stops_run() {
    let _serial = serial();
    // A learning rate of 1e38 makes Adam move every weight by about 1e38 per step, so within a few steps
    // the loss or a gradient of a later step is no longer finite.
    let text = SMALL_PARITY.replace(
        "learning_rate = 0.01",
        "learning_rate = 1e38\ncheckpoint_every = 1",
    );
    let recipe = recipe(&text);
    let run_dir = tempfile::tempdir().unwrap();
    let error = train(
        &recipe,
        Some(Checkpointer::new(run_dir.path(), Some(1))),
        false,
        &mut SilentMonitor,
    )
    .unwrap_err();
    let TrainingError::NonFinite {
        quantity,
        epoch,
        step,
        ..
    } = &error
    else {
        panic!("expected a non-finite error, got {error}");
    };
    assert!(*step >= 2, "step {step}");
    assert_eq!(*epoch, 1);
    assert!(
        quantity.contains("loss") || quantity.contains("gradient"),
        "{quantity}"
    );
    let message = error.to_string();
    assert!(message.contains(&format!("step {step}")), "{message}");
    assert!(message.contains("epoch 1"), "{message}");

    // The last good checkpoint is the one before the faulty step.
    let state = std::fs::read_to_string(run_dir.path().join("checkpoint/state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["step"].as_u64(), Some(step - 1));
}

#[test]
fn training_lowers_the_loss() {
    let _serial = serial();
    // Two-element parity (XOR of the signs) is learnable in a few hundred steps, so the mean
    // loss of the last epoch must end far below the first epoch's, which starts near ln 2.
    let text = SMALL_PARITY
        .replace("length = 4", "length = 2")
        .replace("train_nonzeros = [1, 4]", "train_nonzeros = [1, 2]")
        .replace("eval_nonzeros = [1, 4]", "eval_nonzeros = [1, 2]")
        .replace("epochs = 3", "epochs = 8")
        .replace("steps_per_epoch = 5", "steps_per_epoch = 40");
    let recipe = recipe(&text);
    let outcome = train(&recipe, None, false, &mut SilentMonitor).unwrap();
    let first = outcome.history.first().unwrap().loss;
    let last = outcome.history.last().unwrap().loss;
    assert!(first > 0.5, "first epoch loss {first} is not near ln 2");
    assert!(last < 0.5 * first, "loss went from {first} to {last} only");
}

/// The fused ACT kernel and Burn's autodiff compute the same step, so short runs agree up to
/// floating-point rounding, and `auto` picks the fused kernel on flex.
#[test]
fn fused_kernel_trains_like_burn() {
    let _serial = serial();
    let with_kernel = |kernel: &str| {
        let text = SMALL_PARITY.replace(
            "learning_rate = 0.01",
            &format!("learning_rate = 0.01\nkernel = \"{kernel}\""),
        );
        let outcome = train(&recipe(&text), None, false, &mut SilentMonitor).expect("trains");
        metrics(&outcome.history)
    };
    let burn = with_kernel("burn");
    let fused = with_kernel("fused");
    let auto = with_kernel("auto");
    assert_eq!(auto, fused, "auto on flex must be the fused kernel");
    assert_eq!(burn.len(), fused.len());
    for (burn, fused) in burn.iter().zip(&fused) {
        let relative = (burn.loss - fused.loss).abs() / burn.loss.abs().max(1e-9);
        assert!(
            relative < 1e-4,
            "epoch {}: loss {} (burn) against {} (fused)",
            burn.epoch,
            burn.loss,
            fused.loss
        );
        assert_eq!(
            burn.halting_histogram, fused.halting_histogram,
            "epoch {}",
            burn.epoch
        );
    }
}
