//! One test per recipe rule: each invalid recipe is rejected with a message that names the
//! file, the key (or line), the value and what was expected.

use std::path::Path;

use haltlab_training::{Recipe, RecipeError};

const PARITY: &str = r#"
seed = 1
[parity]
length = 8
train_nonzeros = [1, 8]
eval_nonzeros = [1, 8]
[ponder]
hidden_size = 32
[halting]
method = "act"
epsilon = 0.01
max_steps = 10
ponder_weight = 0.001
[training]
epochs = 2
steps_per_epoch = 10
batch_size = 32
learning_rate = 0.001
"#;

const MNIST: &str = r#"
[mnist]
format = "csv"
[exits]
hidden_sizes = [64, 64]
threshold = 0.9
[training]
epochs = 1
batch_size = 32
learning_rate = 0.001
"#;

const FILE: &str = "experiments/broken.toml";

/// Parses and validates `text`, returning the error message.
fn rejection(text: &str) -> String {
    let path = Path::new(FILE);
    let error = Recipe::parse(text, path)
        .and_then(|recipe| recipe.validate(path).map(|()| recipe))
        .expect_err("the recipe should be rejected");
    let message = error.to_string();
    assert!(
        message.contains(FILE),
        "message does not name the file: {message}"
    );
    message
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "message lacks `{part}`: {message}");
    }
}

#[test]
fn valid_recipes_pass() {
    for text in [PARITY, MNIST] {
        let recipe = Recipe::parse(text, Path::new(FILE)).unwrap();
        recipe.validate(Path::new(FILE)).unwrap();
    }
}

#[test]
fn unknown_key_rejected() {
    let message = rejection(&PARITY.replace("hidden_size = 32", "hidden_size = 32\nhiden = 3"));
    assert_mentions(&message, &["unknown field", "hiden", "line"]);
}

#[test]
fn wrong_type_rejected() {
    let message = rejection(&PARITY.replace("batch_size = 32", "batch_size = \"thirty-two\""));
    assert_mentions(&message, &["batch_size", "line", "thirty-two"]);
}

#[test]
fn epsilon_outside_unit_interval() {
    for value in ["0.0", "1.0", "-0.5", "1.5"] {
        let message = rejection(&PARITY.replace("epsilon = 0.01", &format!("epsilon = {value}")));
        assert_mentions(&message, &["halting.epsilon", "(0, 1)"]);
    }
}

#[test]
fn zero_max_steps_rejected() {
    let message = rejection(&PARITY.replace("max_steps = 10", "max_steps = 0"));
    assert_mentions(&message, &["halting.max_steps", "= 0", "at least 1"]);
}

#[test]
fn threshold_outside_probability_range() {
    for value in ["1.5", "-0.1"] {
        let message = rejection(&MNIST.replace("threshold = 0.9", &format!("threshold = {value}")));
        assert_mentions(&message, &["exits.threshold", value, "[0, 1]"]);
    }
}

#[test]
fn negative_learning_rate_rejected() {
    let message = rejection(&PARITY.replace("learning_rate = 0.001", "learning_rate = -0.001"));
    assert_mentions(&message, &["training.learning_rate", "-0.001", "positive"]);
}

#[test]
fn final_learning_rate_without_decay_rejected() {
    let message = rejection(&PARITY.replace(
        "learning_rate = 0.001",
        "learning_rate = 0.001\nfinal_learning_rate = 0.0001",
    ));
    assert_mentions(
        &message,
        &[
            "training.final_learning_rate",
            "0.0001",
            "learning_rate_decay",
        ],
    );
}

#[test]
fn final_learning_rate_above_start_rejected() {
    let message = rejection(&PARITY.replace(
        "learning_rate = 0.001",
        "learning_rate = 0.001\nlearning_rate_decay = \"cosine\"\nfinal_learning_rate = 0.01",
    ));
    assert_mentions(
        &message,
        &[
            "training.final_learning_rate",
            "0.01",
            "from 0 to learning_rate",
        ],
    );
}

#[test]
fn unknown_learning_rate_decay_rejected() {
    let message = rejection(&PARITY.replace(
        "learning_rate = 0.001",
        "learning_rate = 0.001\nlearning_rate_decay = \"step\"",
    ));
    assert_mentions(&message, &["learning_rate_decay", "step", "cosine"]);
}

#[test]
fn zero_learning_rate_rejected() {
    let message = rejection(&PARITY.replace("learning_rate = 0.001", "learning_rate = 0.0"));
    assert_mentions(&message, &["training.learning_rate", "positive"]);
}

#[test]
fn nonzero_range_beyond_length() {
    let message = rejection(&PARITY.replace("eval_nonzeros = [1, 8]", "eval_nonzeros = [5, 9]"));
    assert_mentions(
        &message,
        &["parity.eval_nonzeros", "[5, 9]", "parity.length (8)"],
    );
}

#[test]
fn negative_ponder_weight_rejected() {
    let message = rejection(&PARITY.replace("ponder_weight = 0.001", "ponder_weight = -1.0"));
    assert_mentions(&message, &["halting.ponder_weight", "-1", "non-negative"]);
}

#[test]
fn zero_input_size_rejected() {
    let message = rejection(&MNIST.replace("threshold = 0.9", "threshold = 0.9\ninput_size = 0"));
    assert_mentions(&message, &["exits.input_size", "784"]);
}

#[test]
fn loss_weights_per_exit() {
    let message =
        rejection(&MNIST.replace("threshold = 0.9", "threshold = 0.9\nloss_weights = [1.0]"));
    assert_mentions(&message, &["exits.loss_weights", "[1.0]", "2 non-negative"]);
}

#[test]
fn fractions_leave_training_data() {
    let message = rejection(&MNIST.replace(
        "format = \"csv\"",
        "format = \"csv\"\nvalidation_fraction = 0.5\ntest_fraction = 0.5",
    ));
    assert_mentions(&message, &["mnist.validation_fraction", "below 1"]);
}

#[test]
fn two_task_sections_rejected() {
    let message = rejection(&format!("{PARITY}\n[mnist]\nformat = \"csv\"\n"));
    assert_mentions(&message, &["exactly one task section"]);
}

#[test]
fn missing_ponder_section() {
    let message = rejection(&PARITY.replace("[ponder]\nhidden_size = 32\n", ""));
    assert_mentions(&message, &["[ponder]"]);
}

#[test]
fn zero_checkpoint_interval_rejected() {
    let message = rejection(&PARITY.replace(
        "learning_rate = 0.001",
        "learning_rate = 0.001\ncheckpoint_every = 0",
    ));
    assert_mentions(&message, &["training.checkpoint_every", "positive"]);
}

#[test]
fn unknown_halting_method() {
    let message = rejection(&PARITY.replace("method = \"act\"", "method = \"magic\""));
    assert_mentions(&message, &["magic", "act"]);
}

#[test]
fn missing_recipe_file() {
    let error = Recipe::load(Path::new("experiments/no-such-recipe.toml")).unwrap_err();
    assert!(matches!(error, RecipeError::Read { .. }));
    assert_mentions(
        &error.to_string(),
        &["no-such-recipe.toml", "failed to read"],
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let path = Path::new(FILE);
            if let Ok(recipe) = Recipe::parse(&text, path) {
                let _ = recipe.validate(path);
            }
        }

        #[test]
        fn edited_recipe_never_panics(cut in 0usize..600, insert in "[a-z_=\\[\\]\"0-9.\\-\n ]{0,20}") {
            let mut text = PARITY.to_owned();
            let at = cut.min(text.len());
            let at = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            text.insert_str(at, &insert);
            let path = Path::new(FILE);
            if let Ok(recipe) = Recipe::parse(&text, path) {
                let _ = recipe.validate(path);
            }
        }
    }
}

const GATE_SCHEDULE: &str = "\n[schedule.regulariser]\nshape = \"linear\"\nstart = 0.0\nend = 1.0\nstart_step = 10\nend_step = 50\n";

#[test]
fn exit_gate_schedule_accepted() {
    let text =
        MNIST.replace("threshold = 0.9", "threshold = 0.9\ngate = \"pondernet\"") + GATE_SCHEDULE;
    let recipe = Recipe::parse(&text, Path::new(FILE)).unwrap();
    recipe.validate(Path::new(FILE)).unwrap();
}

#[test]
fn exit_schedule_needs_gate() {
    let message = rejection(&format!("{MNIST}{GATE_SCHEDULE}"));
    assert_mentions(&message, &["schedule.regulariser", "gate = \"pondernet\""]);
}

#[test]
fn fused_kernel_needs_act() {
    let act = "seed = 1\n[parity]\nlength = 4\ntrain_nonzeros = [1, 4]\neval_nonzeros = [1, 4]\n[ponder]\nhidden_size = 8\n[halting]\nmethod = \"act\"\nmax_steps = 3\nponder_weight = 0.01\n[training]\nepochs = 1\nsteps_per_epoch = 2\nbatch_size = 8\nlearning_rate = 0.01\nkernel = \"fused\"\n";
    let path = std::path::Path::new("kernel.toml");
    let recipe = haltlab_training::Recipe::parse(act, path).expect("parses");
    recipe.validate(path).expect("the fused kernel trains ACT");

    let pondernet = act.replace(
        "method = \"act\"\nmax_steps = 3\nponder_weight = 0.01",
        "method = \"pondernet\"\nmax_steps = 3\nlambda_prior = 0.3\nkl_weight = 0.01",
    );
    let recipe = haltlab_training::Recipe::parse(&pondernet, path).expect("parses");
    let error = recipe.validate(path).unwrap_err().to_string();
    assert!(error.contains("training.kernel"), "{error}");
    assert!(error.contains("method = \"act\" only"), "{error}");

    let unknown = act.replace("kernel = \"fused\"", "kernel = \"cuda\"");
    let error = haltlab_training::Recipe::parse(&unknown, path)
        .unwrap_err()
        .to_string();
    assert!(error.contains("kernel"), "{error}");
}
