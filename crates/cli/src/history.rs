//! Streams the training history to `history.jsonl` as epochs finish.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use haltlab_eval::EpochRecord;
use haltlab_eval::results::history_line;
use haltlab_training::Monitor;

/// Appends one JSON line per epoch to the history file, then passes every event on to `inner`.
///
/// Each line is written with a single `write_all` on a file opened for appending and then
/// flushed to disk, so a crash can leave at most a final line without its newline, which
/// `haltlab_eval::read_history` ignores. A write error is reported once and then ignores the
/// file, so training goes on; the run rewrites the whole file when it ends.
pub struct HistoryMonitor<'a> {
    inner: &'a mut dyn Monitor,
    path: PathBuf,
    file: Option<File>,
    /// Every record seen, for the result file of a run that fails part way.
    pub records: Vec<EpochRecord>,
}

impl<'a> HistoryMonitor<'a> {
    /// Creates the history file (empty) at `path`.
    pub fn create(path: &Path, inner: &'a mut dyn Monitor) -> Result<Self> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)
            .with_context(|| format!("failed to create history file {}", path.display()))?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
            file: Some(file),
            records: Vec::new(),
        })
    }

    fn append(&mut self, record: &EpochRecord) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let line = history_line(record).map_err(std::io::Error::other)?;
        file.write_all(&line)?;
        file.sync_data()
    }
}

impl Monitor for HistoryMonitor<'_> {
    fn start(&mut self, total_steps: u64) {
        self.inner.start(total_steps);
    }

    fn step(&mut self, step: u64, loss: f64) {
        self.inner.step(step, loss);
    }

    fn epoch(&mut self, record: &EpochRecord) {
        if let Err(error) = self.append(record) {
            tracing::warn!(
                path = %self.path.display(),
                %error,
                "could not append to the history file; it is rewritten when the run ends"
            );
            self.file = None;
        }
        self.records.push(record.clone());
        self.inner.epoch(record);
    }

    fn finish(&mut self) {
        self.inner.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haltlab_eval::read_history;
    use haltlab_training::SilentMonitor;

    #[test]
    fn each_epoch_is_readable_as_soon_as_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let mut silent = SilentMonitor;
        let mut monitor = HistoryMonitor::create(&path, &mut silent).unwrap();
        for epoch in 1..=3 {
            monitor.epoch(&EpochRecord {
                epoch,
                loss: 1.0 / epoch as f64,
                ..EpochRecord::default()
            });
            let read = read_history(&path).unwrap();
            assert_eq!(read.len(), epoch);
            assert_eq!(read.last().unwrap().epoch, epoch);
        }
        assert_eq!(monitor.records.len(), 3);
        // A second run never appends to an existing history.
        let mut silent = SilentMonitor;
        assert!(HistoryMonitor::create(&path, &mut silent).is_err());
    }
}
