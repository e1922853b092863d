//! Training progress: a progress bar on standard error, one history line per epoch in the run
//! directory, and the Ctrl-C stop request.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use haltlab_eval::EpochRecord;
use haltlab_training::Monitor;
use indicatif::{ProgressBar, ProgressStyle};

/// Draws progress, appends each epoch to `history.jsonl` and keeps the records, so that a run
/// that fails still has its history for the result file.
pub struct ProgressMonitor {
    bar: ProgressBar,
    history_path: PathBuf,
    history: Vec<EpochRecord>,
    stop: Arc<AtomicBool>,
}

impl ProgressMonitor {
    /// Creates a monitor whose progress bar is hidden when `quiet` is set; `stop` becomes true
    /// when the user presses Ctrl-C.
    pub fn new(
        quiet: bool,
        history_path: PathBuf,
        history: Vec<EpochRecord>,
        stop: Arc<AtomicBool>,
    ) -> Self {
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
        Self {
            bar,
            history_path,
            history,
            stop,
        }
    }

    /// Epoch records received so far, including those of a resumed run's earlier part.
    pub fn history(&self) -> &[EpochRecord] {
        &self.history
    }

    /// Appends one JSON line and flushes it, so a reader sees whole lines; a crash in the middle
    /// of a write can leave only the last line incomplete.
    fn append_history(&self, record: &EpochRecord) {
        let line = match serde_json::to_string(record) {
            Ok(line) => line,
            Err(error) => {
                tracing::warn!(%error, "failed to encode an epoch record");
                return;
            }
        };
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.history_path)
            .and_then(|mut file| {
                file.write_all(format!("{line}\n").as_bytes())?;
                file.flush()
            });
        if let Err(error) = written {
            tracing::warn!(path = %self.history_path.display(), %error, "failed to append to the history file");
        }
    }
}

impl Monitor for ProgressMonitor {
    fn start(&mut self, first_step: u64, total_steps: u64) {
        self.bar.set_length(total_steps);
        self.bar.set_position(first_step);
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
        self.append_history(record);
        self.history.push(record.clone());
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }

    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
