//! The `haltlab` command: runs experiment recipes, tabulates and plots their results, and
//! lists backends.

mod backend;
mod history;
mod plot;
mod progress;
mod run;
mod table;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Burn version this binary is built against, pinned in the workspace manifest.
pub const BURN_VERSION: &str = "0.22.1";

/// Experiments on when a neural network should stop computing.
#[derive(Debug, Parser)]
#[command(name = "haltlab", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train and evaluate a recipe, writing results/<recipe>/<run-id>/result.json.
    Run(run::RunArgs),
    /// Summarise result files as a table, seeds aggregated as mean ± std.
    Table(table::TableArgs),
    /// Draw figures of result files as SVG and PNG.
    Plot(plot::PlotArgs),
    /// List the backends compiled into this binary and whether each can create its device.
    Backends,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Run(args) => run::run(args).map(|_| ()),
        Command::Table(args) => table::table(args),
        Command::Plot(args) => plot::plot(args),
        Command::Backends => {
            list_backends();
            Ok(())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn list_backends() {
    println!("{:<8} {:<9} device", "backend", "compiled");
    for backend in backend::Backend::ALL {
        let device = if backend.compiled() {
            match backend::create_device(backend) {
                Ok(device) => format!("{device:?}"),
                Err(error) => format!("unavailable: {error:#}"),
            }
        } else {
            "-".to_owned()
        };
        let compiled = if backend.compiled() { "yes" } else { "no" };
        println!("{:<8} {:<9} {}", backend.name(), compiled, device);
    }
    println!("--backend defaults to flex");
}
