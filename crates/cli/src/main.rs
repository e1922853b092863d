//! The `haltlab` command: runs experiment recipes, tabulates and plots their results, and
//! lists backends.

mod backend;
mod bench;
mod bench_exits;
mod compare;
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
    /// Train an early-exit recipe like `run`, then print measured time against FLOP fraction.
    BenchExits(run::RunArgs),
    /// Time the training and early-exit workloads and compare them with the PyTorch reference.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Train a set of parity recipes over seeds and write a comparison table.
    Compare(compare::CompareArgs),
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
        Command::Run(args) => run::run(args).map(|(end, _)| end),
        Command::BenchExits(args) => bench_exits::bench_exits(args).map(|_| run::RunEnd::Completed),
        Command::Bench(command) => bench::bench(command).map(|()| run::RunEnd::Completed),
        Command::Compare(args) => compare::compare(args).map(|_| run::RunEnd::Completed),
        Command::Table(args) => table::table(args).map(|()| run::RunEnd::Completed),
        Command::Plot(args) => plot::plot(args).map(|()| run::RunEnd::Completed),
        Command::Backends => {
            list_backends();
            Ok(run::RunEnd::Completed)
        }
    };
    match outcome {
        Ok(run::RunEnd::Completed) => ExitCode::SUCCESS,
        // 130 = 128 + SIGINT, the shell convention for a run stopped by Ctrl-C.
        Ok(run::RunEnd::Interrupted) => ExitCode::from(130),
        Err(error) => {
            eprintln!("error: {}", error_message(&error));
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
                Err(error) => format!("unavailable: {}", error_message(&error)),
            }
        } else {
            "-".to_owned()
        };
        let compiled = if backend.compiled() { "yes" } else { "no" };
        println!("{:<8} {:<9} {}", backend.name(), compiled, device);
    }
    println!("--backend defaults to flex");
}

/// Joins an error and its causes with ": ", leaving out a cause whose text the message already
/// contains (library errors often print their source themselves).
fn error_message(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}
