//! A progress bar for training, drawn with indicatif on standard error.

use haltlab_eval::EpochRecord;
use haltlab_training::Monitor;
use indicatif::{ProgressBar, ProgressStyle};

/// Draws training progress; hidden when `quiet` is set or standard error is not a terminal.
pub struct ProgressMonitor {
    bar: ProgressBar,
}

impl ProgressMonitor {
    pub fn new(quiet: bool) -> Self {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self { bar }
    }
}

impl Monitor for ProgressMonitor {
    fn start(&mut self, total_steps: u64) {
        self.bar.set_length(total_steps);
    }

    fn step(&mut self, step: u64, loss: f64) {
        self.bar.set_position(step);
        if step % 20 == 0 {
            self.bar.set_message(format!("loss {loss:.4}"));
        }
    }

    fn epoch(&mut self, record: &EpochRecord) {
        let validation = record
            .validation_accuracy
            .map(|accuracy| format!("{:.2}%", accuracy * 100.0))
            .unwrap_or_else(|| "-".to_owned());
        self.bar.println(format!(
            "epoch {:>3}  loss {:.4}  train acc {:.2}%  val acc {}  mean halting step {:.2}",
            record.epoch,
            record.loss,
            record.accuracy * 100.0,
            validation,
            record.mean_halting_step
        ));
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}
