//! `heq-run`: executes a heqc plan. Policy only: parse the arguments, run, print an error once.
//! Exit codes: 0 success, 1 failure, 2 usage error, 3 the parties disagree on the plan or the
//! protocol version.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => return usage(&e),
    };
    pool();
    report(cli::run(&args))
}

/// Prints a parse error; `--help` and `--version` are "errors" that print to stdout and succeed.
fn usage(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// cryprot-ot's silent OT receiver blocks a rayon worker while it waits: with both parties in
/// one process (`--mode sim`, calibration) a pool of the 2 default threads could starve.
fn pool() {
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get().max(4));
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
}

/// Prints an error once and maps it to the exit code.
fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heq-run: {e:#}");
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
