//! Command line of `heq-run`: the arguments (clap derive) and the dispatch to one file per job:
//! [`plain`] (`--mode plain`), [`sim`] (`--mode sim`), [`server`] (`--role server`), [`client`]
//! (`--role client`) and [`calibrate`] (the `calibrate` subcommand). [`args`] holds the run
//! arguments the four modes share, [`samples`] the `.npy` inputs and outputs, [`progress`] the
//! indicatif bars the network roles draw.

mod args;
mod calibrate;
mod client;
mod plain;
mod progress;
mod samples;
mod server;
mod sim;

use anyhow::Context;
use clap::{Parser, Subcommand};
use heq_runtime::error::OutputError;
use heq_runtime::output_file;
use heq_runtime::party::Report;
use heq_runtime::party::net::SessionError;
use heq_runtime::party::report::{self, RunInfo, RunReport};
use std::net::{SocketAddr, ToSocketAddrs};

pub use args::RunArgs;
use args::{Mode, RoleArg};

/// Runs a heqc plan on `.npy` samples in one of four modes, or measures this machine
/// (`heq-run calibrate`).
#[derive(Debug, Parser)]
#[command(
    name = "heq-run",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "\
Modes:
  --mode plain    the plaintext reference executor: no cryptography, no network; the outputs
                  every two-party run reproduces bit for bit
  --mode sim      both parties in this process (two threads, real HE and OT over a loopback
                  QUIC connection); prints the per-layer traffic, measured and predicted
  --role server   one party over the network: holds the weights, serves clients over QUIC
  --role client   one party over the network: holds the input, connects to a server, gets
                  the output
  calibrate       measure this machine's compute profile for heqc's latency predictions

Examples:
  heq-run --plan server.plan --mode plain --input x.npy --output y.npy [--raw]
  heq-run --plan server.plan --mode sim --input x.npy --output y.npy [--ot silent|iknp] [--seed N]
  heq-run --plan server.plan --role server --listen 0.0.0.0:4433 [--cert c.pem --key k.pem]
  heq-run --plan client.plan --role client --connect HOST:4433 --server-fingerprint SHA256HEX \\
      --input x.npy --output y.npy
  heq-run calibrate --out profile.json

Exit codes: 0 success, 1 failure, 2 usage error, 3 the parties disagree on the plan or the
protocol version."
)]
pub struct Cli {
    /// A job other than running a plan.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Running a plan.
    #[command(flatten)]
    pub run: RunArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure this machine's compute profile (HE per ciphertext, nonlinear protocol and OT
    /// extension per ROT) for heqc's latency predictions (`heqc compile --profile`).
    Calibrate(calibrate::CalibrateArgs),
}

/// Runs the command.
///
/// # Errors
/// Unreadable or invalid plan, unreadable input, wrong input shape or dtype, a run error, a
/// network or peer failure, a failed measurement or a failed write; each with the file or
/// peer it concerns.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    if let Some(Command::Calibrate(args)) = &cli.command {
        return calibrate::run(args);
    }
    let args = &cli.run;
    init_logging(args.verbose);
    args.check_outputs()?;
    match (args.role, args.mode) {
        (Some(RoleArg::Server), _) => server::run(args),
        (Some(RoleArg::Client), _) => client::run(args),
        (None, Some(Mode::Sim)) => sim::run(args),
        (None, _) => plain::run(args),
    }
}

/// Exit code of a failed run: 2 for an output path that cannot be written (a usage error
/// found before any work), 3 when the parties disagree on the plan or the protocol version, 1
/// otherwise.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<OutputError>()) {
        return 2;
    }
    let mismatch = e.chain().any(|c| {
        c.downcast_ref::<SessionError>()
            .is_some_and(SessionError::is_mismatch)
            || c.downcast_ref::<server::ServerFailed>()
                .is_some_and(server::ServerFailed::is_mismatch)
    });
    if mismatch { 3 } else { 1 }
}

/// Tracing to stderr: `RUST_LOG` if set, else warnings, `-v` info, `-vv` debug (cryprot-net's
/// stream acceptor logs an error whenever a connection closes: shown from `-vv` on).
fn init_logging(verbose: u8) {
    let level =
        ["warn,cryprot_net=off", "info,cryprot_net=off", "debug"][usize::from(verbose.min(2))];
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints the per-layer table, the summary and any deviation from the prediction; writes the
/// JSON report if asked.
fn finish_report(
    args: &RunArgs,
    title: &str,
    summed: &Report,
    info: RunInfo,
) -> anyhow::Result<()> {
    let report = RunReport::new(info, summed);
    eprintln!("{title}:");
    eprint!("{}", summed.table());
    eprint!("{}", report.summary());
    for warning in report::deviations(summed)
        .into_iter()
        .chain(report.ot_extension.deviation())
    {
        eprintln!("{warning}");
    }
    if let Some(path) = &args.report {
        output_file::write_atomically(path, report.to_json().as_bytes())
            .with_context(|| format!("writing the report {}", path.display()))?;
    }
    Ok(())
}

/// A tokio runtime for a network party: the connection's tasks on the workers, the party
/// driver in `block_in_place`.
fn net_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The first address `addr` resolves to.
fn resolve(addr: &str, what: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("{what} {addr}"))?
        .next()
        .with_context(|| format!("{what} {addr}: no address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn calibrate_is_a_subcommand_without_run_arguments() {
        let cli = Cli::try_parse_from(["heq-run", "calibrate", "--out", "p.json"]).expect("parse");
        assert!(matches!(
            &cli.command,
            Some(Command::Calibrate(a)) if a.out.as_deref() == Some(std::path::Path::new("p.json"))
        ));
        assert!(Cli::try_parse_from(["heq-run", "--plan", "p", "calibrate"]).is_err());
        assert!(Cli::try_parse_from(["heq-run", "--mode", "plain"]).is_err());
        let cli = Cli::try_parse_from(["heq-run", "--plan", "p", "--mode", "sim", "--input", "x"])
            .expect("parse");
        assert!(cli.command.is_none());
        assert_eq!(cli.run.mode, Some(Mode::Sim));
    }
}
