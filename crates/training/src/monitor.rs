//! Progress reporting from training loops.

use haltlab_eval::EpochRecord;

/// Receives progress from a training loop; the command-line tool draws a progress bar.
pub trait Monitor {
    /// Called once before the first step with the step to start from (0 unless resuming) and
    /// the total number of optimiser steps planned.
    fn start(&mut self, _first_step: u64, _total_steps: u64) {}
    /// Called after every optimiser step with the step number (from 1) and its loss.
    fn step(&mut self, _step: u64, _loss: f64) {}
    /// Called after every epoch with its record.
    fn epoch(&mut self, _record: &EpochRecord) {}
    /// Called once training has ended.
    fn finish(&mut self) {}
    /// Polled after every step; returning true saves a checkpoint and stops the run (Ctrl-C).
    fn stop_requested(&self) -> bool {
        false
    }
}

/// A monitor that ignores all progress, for tests and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SilentMonitor;

impl Monitor for SilentMonitor {}
