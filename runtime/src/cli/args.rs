//! The arguments of running a plan (`--mode plain|sim`, `--role server|client`), shared by the
//! four modes; each field says which modes read it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use heq_runtime::output_file;
use heq_runtime::party::DEFAULT_KERNEL_MEMORY;
use heq_runtime::plan::OtBackend;
use heq_runtime::transport::net::Fingerprint;

/// Running a plan: in the clear (`--mode plain`), both parties in one process (`--mode sim`),
/// or as one party over the network (`--role server|client`).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Plan file written by `heqc compile`: the server plan (with weights) for `--mode` and
    /// `--role server`, the client plan (`--client-out`, no weights) for `--role client`.
    #[arg(long, value_name = "FILE", required = true)]
    pub plan: Option<PathBuf>,
    /// Run both parties (or the reference executor) in this process instead of one party over
    /// the network.
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        required_unless_present = "role"
    )]
    pub mode: Option<Mode>,
    /// Run one party over the network.
    #[arg(long, value_enum, value_name = "ROLE", conflicts_with = "mode")]
    pub role: Option<RoleArg>,
    /// Server: the address to listen on (`HOST:PORT`; port 0 picks a free one).
    #[arg(
        long,
        value_name = "ADDR",
        required_if_eq("role", "server"),
        conflicts_with = "connect"
    )]
    pub listen: Option<String>,
    /// Client: the server's address (`HOST:PORT`).
    #[arg(long, value_name = "ADDR", required_if_eq("role", "client"))]
    pub connect: Option<String>,
    /// Server: PEM certificate chain to present (default: a self-signed certificate generated
    /// at start; its fingerprint is printed).
    #[arg(long, value_name = "FILE", requires = "key", requires = "listen")]
    pub cert: Option<PathBuf>,
    /// Server: PEM private key of `--cert`.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Server: sessions served at once; further clients wait.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_sessions: u64,
    /// Server: exit after serving this many client sessions (default: serve until killed).
    /// The exit code is 0 if all succeeded, 3 if one failed on a plan or version mismatch,
    /// 1 otherwise.
    #[arg(long, value_name = "K", requires = "listen", value_parser = clap::value_parser!(u64).range(1..))]
    pub sessions: Option<u64>,
    /// Server and `--mode sim`: memory for the server's kernels (weight polynomials in NTT
    /// form, built before the first client), in MiB. Layers are prepared in plan order while
    /// their kernels fit what is left; the other layers build their kernels during every
    /// inference, which costs server time. More memory: faster inferences, a slower start and
    /// a larger resident size; 0 prepares none. The server prints what it prepared.
    #[arg(long, value_name = "MiB", default_value_t = (DEFAULT_KERNEL_MEMORY >> 20) as u64)]
    pub kernel_memory: u64,
    /// Client: the SHA-256 fingerprint of the server's certificate (64 hex digits, as the
    /// server prints it); without it the server is not authenticated.
    #[arg(long, value_name = "SHA256HEX", requires = "connect")]
    pub server_fingerprint: Option<Fingerprint>,
    /// Network roles: how long to wait for the peer before failing: for the connection, and
    /// for each of its messages while this party has nothing to compute (its own work, e.g. a
    /// long batch of random OTs, does not count). Default: as long as the connection lives.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
    /// Write the per-layer measured and predicted traffic as JSON (`docs/report.md`);
    /// written atomically, checked to be writable before the run starts.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Client: run even though the plan carries the server's weights.
    #[arg(long)]
    pub allow_weights: bool,
    /// Input samples: a float32 or float64 `.npy` array whose shape is the plan's input shape
    /// (one sample) or `[N, ...input shape]` (a batch).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "role",
        required_if_eq("role", "client"),
        conflicts_with = "listen"
    )]
    pub input: Option<PathBuf>,
    /// Where to write the outputs: float32 `.npy` of shape `[N, ...output shape]` (no `N` if
    /// the input had none), dequantized with the output scale. Written atomically, checked to be
    /// writable before the run starts.
    #[arg(long, value_name = "FILE", requires = "input")]
    pub output: Option<PathBuf>,
    /// Write the revealed outputs `q = v + zero_point` as int32, before the plan's epilogue,
    /// instead of the model output (dequantized floats, or the epilogue's floats or indices).
    #[arg(long)]
    pub raw: bool,
    /// OT backend of `--mode sim` (default: the plan's).
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub ot: Option<OtArg>,
    /// Seed of both parties' randomness in `--mode sim` (default: from the OS).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Log more (`-v`: sessions, `-vv`: protocol steps); `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl RunArgs {
    /// The plan path (clap makes it present unless a subcommand runs).
    ///
    /// # Errors
    /// No `--plan`.
    pub fn plan(&self) -> anyhow::Result<&Path> {
        self.plan.as_deref().context("--plan is required")
    }

    /// `--kernel-memory` in bytes.
    pub fn kernel_memory_bytes(&self) -> usize {
        usize::try_from(self.kernel_memory)
            .unwrap_or(usize::MAX)
            .saturating_mul(1 << 20)
    }

    /// The input and output paths (clap makes them present where the mode needs them).
    ///
    /// # Errors
    /// No `--input` or no `--output`.
    pub fn io_paths(&self) -> anyhow::Result<(&Path, &Path)> {
        match (&self.input, &self.output) {
            (Some(i), Some(o)) => Ok((i, o)),
            _ => anyhow::bail!("--input and --output are required"),
        }
    }

    /// Checks, before any work, that `--output` and `--report` can be written and are not the
    /// same file.
    ///
    /// # Errors
    /// An [`heq_runtime::error::OutputError`] (a usage error), with the option it concerns.
    pub fn check_outputs(&self) -> anyhow::Result<()> {
        if let Some(path) = &self.output {
            output_file::check_writable(path).context("--output")?;
        }
        if let Some(path) = &self.report {
            output_file::check_writable(path).context("--report")?;
        }
        if let (Some(output), Some(report)) = (&self.output, &self.report) {
            output_file::check_distinct(output, report).context("--output and --report")?;
        }
        Ok(())
    }
}

/// A party over the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// The model owner: holds the weights, serves clients.
    Server,
    /// The input owner: connects to a server, gets the output.
    Client,
}

/// Seconds as a positive duration.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a positive number of seconds"))
}

/// OT backend on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OtArg {
    /// Silent OT (least communication).
    Silent,
    /// IKNP OT extension.
    Iknp,
}

impl From<OtArg> for OtBackend {
    fn from(a: OtArg) -> Self {
        match a {
            OtArg::Silent => OtBackend::Silent,
            OtArg::Iknp => OtBackend::Iknp,
        }
    }
}

/// Execution mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The plaintext reference executor in this process: bit-exact with what the two-party
    /// protocols compute, without cryptography or network.
    Plain,
    /// Both parties in this process (two threads, in-memory channel, real OT over a loopback
    /// QUIC connection): bit-exact with `plain`; prints the per-layer traffic, measured and
    /// predicted, on stderr.
    Sim,
}
