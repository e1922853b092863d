//! `haltlab plot`: draw the figures of result files as SVG and PNG.

use std::path::PathBuf;

use anyhow::Result;
use haltlab_eval::plot::plot_runs;
use haltlab_eval::runs::collect_runs;

/// Options of `haltlab plot`.
#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// Result files, run directories, directories of runs, or glob patterns (quoted). Runs still
    /// training contribute their training curves from history.jsonl.
    #[arg(required = true)]
    pub results: Vec<String>,
    /// Directory for the figures; created if missing, files of the same name are replaced.
    #[arg(long)]
    pub out: PathBuf,
}

/// Draws every figure and prints the paths written.
pub fn plot(args: &PlotArgs) -> Result<()> {
    let runs = collect_runs(&args.results)?;
    let written = plot_runs(&runs, &args.out)?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}
