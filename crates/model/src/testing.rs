//! Test helpers shared by the modules of this crate.

use std::sync::{Mutex, MutexGuard};

use burn::tensor::Device;

/// Locks flex's random generator for one test. flex has one generator per process, so tests
/// that seed it and draw from it while other tests run in parallel would get each other's
/// numbers. Hold the guard until the test has drawn everything.
pub(crate) fn generator_lock() -> MutexGuard<'static, ()> {
    static GENERATOR: Mutex<()> = Mutex::new(());
    GENERATOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Returns a flex device seeded with `seed`, and the generator lock to hold while drawing.
pub(crate) fn seeded_flex(seed: u64) -> (Device, MutexGuard<'static, ()>) {
    let guard = generator_lock();
    let device = Device::flex();
    device.seed(seed);
    (device, guard)
}
