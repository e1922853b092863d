//! `haltlab table`: summarise result files as a Markdown, LaTeX or CSV table.

use std::path::PathBuf;

use anyhow::{Context, Result};
use haltlab_eval::runs::{RunState, collect_runs};
use haltlab_eval::table::{Format, build_tables, render};

/// Output format of `haltlab table`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TableFormat {
    Markdown,
    Latex,
    Csv,
}

/// Options of `haltlab table`.
#[derive(Debug, clap::Args)]
pub struct TableArgs {
    /// Result files, run directories, directories of runs, or glob patterns (quoted).
    #[arg(required = true)]
    pub results: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: TableFormat,
    /// Comma-separated columns instead of the task's defaults: accuracy, halting_steps,
    /// steps_to_99, extrapolation, flop_fraction, latency_p50_ms, latency_p99_ms, exit_shares,
    /// wall_seconds, or a dotted path into result.json such as evaluation.test.max_halting_step.
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Write the table to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Prints or writes the table.
pub fn table(args: &TableArgs) -> Result<()> {
    let runs = collect_runs(&args.results)?;
    for run in &runs {
        match &run.state {
            RunState::Failed { reason } => {
                eprintln!(
                    "note: left out failed run {}: {reason}",
                    run.source.display()
                )
            }
            RunState::Training => {
                eprintln!(
                    "note: left out run still training: {}",
                    run.source.display()
                )
            }
            RunState::Completed => {}
        }
    }
    let tables = build_tables(&runs, args.columns.as_deref());
    if tables.is_empty() {
        anyhow::bail!(
            "none of the {} runs found under {} completed; nothing to tabulate",
            runs.len(),
            args.results.join(" ")
        );
    }
    let format = match args.format {
        TableFormat::Markdown => Format::Markdown,
        TableFormat::Latex => Format::Latex,
        TableFormat::Csv => Format::Csv,
    };
    let text = render(&tables, format);
    match &args.out {
        Some(path) => haltlab_eval::results::write_atomic(path, text.as_bytes())
            .with_context(|| format!("failed to write the table to {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
