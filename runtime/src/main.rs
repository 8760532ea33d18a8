//! `heq-run`: executes a heqc plan. Policy only: parse the arguments, run, print an error once.
//! Exit codes: 0 success, 1 failure, 2 usage error, 3 the parties disagree on the plan or the
//! protocol version.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            // `--help` and `--version` are "errors" that print to stdout and succeed.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // cryprot-ot's silent OT receiver blocks a rayon worker while it waits: with both parties
    // in one process (`--mode sim`) a pool of the 2 default threads could starve.
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get().max(4));
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    match cli::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heq-run: {e:#}");
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
