//! Metrics and result files of haltlab runs.
//!
//! Every run writes one [`RunResult`] as JSON; its structs are the result schema, and
//! [`SCHEMA_VERSION`] changes whenever a key changes meaning or is removed.

pub mod metrics;
pub mod plot;
pub mod results;
pub mod runs;
pub mod table;

pub use metrics::{Histogram, accuracy};
pub use results::{
    EpochRecord, Evaluation, OLDEST_READABLE_SCHEMA, ResultError, RunResult, RunStatus,
    SCHEMA_VERSION, SweepPoint, create_run_dir, read_history, write_json_atomic,
};
