//! Metrics and result files of haltlab runs.
//!
//! Every run writes one [`RunResult`] as JSON; its structs are the result schema, and
//! [`SCHEMA_VERSION`] changes whenever a key changes meaning or is removed.

pub mod bench;
pub mod calibration;
pub mod exit_report;
pub mod latency;
pub mod metrics;
pub mod plot;
pub mod results;
pub mod runs;
pub mod sweep;
pub mod table;

pub use exit_report::{ComputeReport, ExitReport, ShiftReport};
pub use metrics::{Histogram, accuracy};
pub use results::{
    EpochRecord, Evaluation, FailureFlag, FailureKind, OLDEST_READABLE_SCHEMA, ResultError,
    RunResult, RunStatus, SCHEMA_VERSION, SweepPoint, create_run_dir, read_history,
    write_json_atomic,
};
