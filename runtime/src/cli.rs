//! Command line of `heq-run`: the arguments (clap derive) and what each mode does with them.

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use heq_runtime::nonlinear::Role;
use heq_runtime::npy::{self, NpyArray};
use heq_runtime::party::net::{
    ServeOptions, SessionEnd, SessionError, SessionOptions, client_session, serve,
};
use heq_runtime::party::report::{self, OtJson, RunInfo, RunReport, TransportJson, measured_ot};
use heq_runtime::party::{Prepared, Report, sim};
use heq_runtime::plan::{OtBackend, Plan, read_plan};
use heq_runtime::reference;
use heq_runtime::transport::TransportError;
use heq_runtime::transport::net::{Fingerprint, Identity, Listener, connect};
use indicatif::{MultiProgress, ProgressDrawTarget};
use rayon::prelude::*;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs a heqc plan on `.npy` samples: in the clear (`--mode plain`), both parties in one
/// process (`--mode sim`), or as one party over the network (`--role server|client`).
#[derive(Debug, Parser)]
#[command(
    name = "heq-run",
    version,
    about,
    long_about = None,
    after_help = "heq-run calibrate [--out profile.json]: measure this machine's compute profile."
)]
pub struct Cli {
    /// Plan file written by `heqc compile`: the server plan (with weights) for `--mode` and
    /// `--role server`, the client plan (`--client-out`, no weights) for `--role client`.
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
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
    #[arg(long, value_name = "K", requires = "listen")]
    pub sessions: Option<u64>,
    /// Client: the SHA-256 fingerprint of the server's certificate (64 hex digits, as the
    /// server prints it); without it the server is not authenticated.
    #[arg(long, value_name = "SHA256HEX", requires = "connect")]
    pub server_fingerprint: Option<Fingerprint>,
    /// Network roles: how long to wait for the peer (connecting, and every message) before
    /// failing (default: as long as the connection lives).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
    /// Write the per-layer measured and predicted traffic as JSON (`docs/report.md`).
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
    /// the input had none), dequantized with the output scale. Written atomically.
    #[arg(long, value_name = "FILE", requires = "input")]
    pub output: Option<PathBuf>,
    /// Write the quantized outputs `q = v + zero_point` as int32 instead of dequantized floats.
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

/// Exit code of a failed run: 3 when the parties disagree on the plan or the protocol
/// version, 1 otherwise.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let mismatch = e.chain().any(|c| {
        c.downcast_ref::<SessionError>()
            .is_some_and(SessionError::is_mismatch)
            || c.downcast_ref::<ServerFailed>().is_some_and(|f| f.mismatch)
    });
    if mismatch { 3 } else { 1 }
}

/// A server with `--sessions` saw failed sessions (each already reported).
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {sessions} sessions failed")]
pub struct ServerFailed {
    failed: u64,
    sessions: u64,
    mismatch: bool,
}

/// `heq-run calibrate`: measures this machine's compute profile (HE per ciphertext, nonlinear
/// protocol and OT extension per ROT) for heqc's latency predictions (`heqc compile --profile`).
#[derive(Debug, Parser)]
#[command(name = "heq-run calibrate", version, about, long_about = None)]
pub struct CalibrateCli {
    /// Where to write the JSON profile (default: stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Ciphertexts timed per HE step and context.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub iters: usize,
}

/// Runs `heq-run calibrate`.
///
/// # Errors
/// A failed measurement or write.
pub fn run_calibrate(cli: &CalibrateCli) -> anyhow::Result<()> {
    let profile = heq_runtime::calibrate::calibrate(cli.iters.max(1), rand::random())
        .context("calibrating")?;
    let json = profile.to_json();
    match &cli.out {
        Some(path) => {
            std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{json}"),
    }
    Ok(())
}

/// Runs the command.
///
/// # Errors
/// Unreadable or invalid plan, unreadable input, wrong input shape or dtype, a run error, a
/// network or peer failure, or a failed write; each with the file or peer it concerns.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    init_logging(cli.verbose);
    match (cli.role, cli.mode) {
        (Some(RoleArg::Server), _) => run_server(cli),
        (Some(RoleArg::Client), _) => run_client(cli),
        (None, Some(Mode::Sim)) => run_sim(cli),
        (None, _) => run_plain(cli),
    }
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

/// The input and output paths (clap makes them present where the mode needs them).
fn io_paths(cli: &Cli) -> anyhow::Result<(&Path, &Path)> {
    match (&cli.input, &cli.output) {
        (Some(i), Some(o)) => Ok((i, o)),
        _ => bail!("--input and --output are required"),
    }
}

/// `--mode plain`: quantize, run the reference executor per sample, write the outputs.
fn run_plain(cli: &Cli) -> anyhow::Result<()> {
    let (input_path, output_path) = io_paths(cli)?;
    let (plan, input) = read_inputs(&cli.plan, input_path)?;
    let sample_len = plan.public.input.shape.iter().product::<usize>();
    let outputs = input
        .data
        .par_chunks(sample_len.max(1))
        .enumerate()
        .map(|(i, x)| run_sample(&plan, x).with_context(|| format!("sample {i}")))
        .collect::<anyhow::Result<Vec<Vec<i64>>>>()?;
    write_outputs(output_path, cli.raw, &plan, &input.shape, &outputs)
}

/// `--mode sim`: quantize, run both parties on each sample one after the other, print the
/// per-layer traffic, write the outputs (and the report).
fn run_sim(cli: &Cli) -> anyhow::Result<()> {
    let (input_path, output_path) = io_paths(cli)?;
    let (plan, input) = read_inputs(&cli.plan, input_path)?;
    let samples = quantize(&plan, &input);
    let backend = cli.ot.map_or(plan.public.protocol.ot, OtBackend::from);
    let seed = cli.seed.unwrap_or_else(rand::random);
    let start = Instant::now();
    let runs = sim::run(&plan, &samples, backend, seed).context("two-party run")?;
    let prepared = Prepared::with_backend(&plan.public, backend)?;
    let summed = report::aggregate(runs.iter().map(|r| &r.client));
    let info = RunInfo {
        role: "sim",
        plan_hash: plan.public.hash(),
        ot_backend: backend,
        ot: OtJson::predicted(&prepared.cost, backend, 1, runs.len() as u64),
        sessions: 1,
        samples: runs.len() as u64,
        wall: start.elapsed(),
        transport: TransportJson::default(),
    };
    finish_report(cli, "both parties, client view", &summed, info)?;
    let outputs: Vec<Vec<i64>> = runs.into_iter().map(|r| r.output).collect();
    write_outputs(output_path, cli.raw, &plan, &input.shape, &outputs)
}

/// Prints the per-layer table, the summary and any deviation from the prediction; writes the
/// JSON report if asked.
fn finish_report(cli: &Cli, title: &str, summed: &Report, info: RunInfo) -> anyhow::Result<()> {
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
    if let Some(path) = &cli.report {
        std::fs::write(path, report.to_json())
            .with_context(|| format!("writing the report {}", path.display()))?;
    }
    Ok(())
}

/// Centred quantized samples of a batch.
fn quantize(plan: &Plan, input: &NpyArray<f32>) -> Vec<Vec<i64>> {
    let p = &plan.public;
    let sample_len = p.input.shape.iter().product::<usize>();
    input
        .data
        .chunks(sample_len.max(1))
        .map(|x| reference::quantize_input(p, x))
        .collect()
}

/// A tokio runtime for a network party: the connection's tasks on the workers, the party
/// driver in `block_in_place`.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
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

/// A progress display on stderr (hidden when stderr is not a terminal).
fn progress() -> MultiProgress {
    MultiProgress::with_draw_target(ProgressDrawTarget::stderr())
}

/// `--role server`: listen, print the address and fingerprint, serve sessions.
fn run_server(cli: &Cli) -> anyhow::Result<()> {
    let plan = read_plan(&cli.plan).context("reading the plan")?;
    if plan.weights.is_none() {
        bail!(
            "{}: this plan has no weights; the server needs the plan with weights \
             (heqc compile -o)",
            cli.plan.display()
        );
    }
    let identity = match (&cli.cert, &cli.key) {
        (Some(cert), Some(key)) => Identity::from_pem_files(cert, key)?,
        _ => Identity::generate()?,
    };
    let listen = cli.listen.as_deref().context("--listen is required")?;
    let addr = resolve(listen, "listen address")?;
    let rt = runtime()?;
    let mut listener = rt.block_on(async { Listener::bind(addr, &identity) })?;
    eprintln!(
        "heq-run server: listening on {}, certificate fingerprint sha256:{}",
        listener.local_addr(),
        identity.fingerprint()
    );
    let opts = ServeOptions {
        max_sessions: usize::try_from(cli.max_sessions).unwrap_or(usize::MAX),
        sessions: cli.sessions,
        session: SessionOptions {
            timeout: cli.timeout,
            progress: Some(progress()),
        },
    };
    let plan = Arc::new(plan);
    let prepared = Arc::new(Prepared::new(&plan.public)?);
    let mut summed: Option<Report> = None;
    let mut transport = TransportJson::default();
    let backend = plan.public.protocol.ot;
    let mut ot: Option<OtJson> = None;
    let (mut ok, mut failed, mut mismatch, mut samples) = (0u64, 0u64, false, 0u64);
    let mut wall = Duration::ZERO;
    let mut on_end = |end: SessionEnd| match end.result {
        Ok(session) => {
            ok += 1;
            samples += session.samples.len() as u64;
            wall += session.wall;
            let this = report::aggregate(&session.samples);
            transport.add(&TransportJson::measure(
                Role::Server,
                session.frames,
                this.measured(),
                Some(session.quic),
            ));
            let (up, down) = measured_ot(Role::Server, session.frames, session.quic);
            let n = session.samples.len() as u64;
            let this_ot = OtJson::predicted(&prepared.cost, backend, 1, n).with_measured(up, down);
            let all_ot = match ot.take() {
                Some(mut before) => {
                    before.add(&this_ot);
                    before
                }
                None => this_ot,
            };
            let all = match summed.take() {
                Some(before) => report::aggregate([&before, &this]),
                None => this.clone(),
            };
            let info = RunInfo {
                role: "server",
                plan_hash: plan.public.hash(),
                ot_backend: backend,
                ot: all_ot.clone(),
                sessions: ok,
                samples,
                wall,
                transport: transport.clone(),
            };
            let title = format!(
                "heq-run server: session {} with {} done ({} sample(s)); all sessions so far",
                end.id,
                session.remote,
                session.samples.len()
            );
            if let Err(e) = finish_report(cli, &title, &all, info) {
                eprintln!("heq-run server: {e:#}");
            }
            summed = Some(all);
            ot = Some(all_ot);
        }
        Err(e) => {
            failed += 1;
            mismatch |= e.is_mismatch();
            eprintln!("heq-run server: session {} failed: {e}", end.id);
        }
    };
    rt.block_on(serve(
        &mut listener,
        plan.clone(),
        prepared.clone(),
        &opts,
        &mut on_end,
    ));
    if failed > 0 {
        return Err(ServerFailed {
            failed,
            sessions: ok + failed,
            mismatch,
        }
        .into());
    }
    Ok(())
}

/// `--role client`: connect, run every sample, print the report, write the outputs.
fn run_client(cli: &Cli) -> anyhow::Result<()> {
    let (input_path, output_path) = io_paths(cli)?;
    let (plan, input) = read_inputs(&cli.plan, input_path)?;
    if plan.weights.is_some() && !cli.allow_weights {
        bail!(
            "{}: this plan carries the server's weights, which the client must not hold; \
             use the client plan (heqc compile --client-out), or --allow-weights",
            cli.plan.display()
        );
    }
    let samples = Arc::new(quantize(&plan, &input));
    let plan = Arc::new(plan.to_client());
    let prepared = Arc::new(Prepared::new(&plan.public)?);
    let server = cli.connect.as_deref().context("--connect is required")?;
    let addr = resolve(server, "server address")?;
    let rt = runtime()?;
    let opts = SessionOptions {
        timeout: cli.timeout,
        progress: Some(progress()),
    };
    let start = Instant::now();
    let (outputs, session) = rt.block_on(async {
        let connecting = connect(addr, cli.server_fingerprint);
        let (peer, seen) = match cli.timeout {
            Some(d) => tokio::time::timeout(d, connecting)
                .await
                .map_err(|_| TransportError::Timeout(d))
                .with_context(|| format!("connecting to {addr}"))??,
            None => connecting.await?,
        };
        if cli.server_fingerprint.is_none() {
            eprintln!(
                "heq-run client: WARNING: the server is NOT authenticated (no \
                 --server-fingerprint); it presented the certificate sha256:{seen}"
            );
        }
        client_session(peer, plan.clone(), prepared.clone(), samples, &opts)
            .await
            .with_context(|| format!("session with {addr}"))
    })?;
    let summed = report::aggregate(&session.samples);
    let transport = TransportJson::measure(
        Role::Client,
        session.frames,
        summed.measured(),
        Some(session.quic),
    );
    let backend = plan.public.protocol.ot;
    let (up, down) = measured_ot(Role::Client, session.frames, session.quic);
    let info = RunInfo {
        role: "client",
        plan_hash: plan.public.hash(),
        ot_backend: backend,
        ot: OtJson::predicted(&prepared.cost, backend, 1, session.samples.len() as u64)
            .with_measured(up, down),
        sessions: 1,
        samples: session.samples.len() as u64,
        wall: start.elapsed(),
        transport,
    };
    finish_report(cli, "heq-run client", &summed, info)?;
    write_outputs(output_path, cli.raw, &plan, &input.shape, &outputs)
}

/// Reads the plan and the input samples; checks the batch shape and rejects NaN.
fn read_inputs(plan: &Path, input: &Path) -> anyhow::Result<(Plan, NpyArray<f32>)> {
    let plan = read_plan(plan).context("reading the plan")?;
    let x = npy::read_f32(input).context("reading the input")?;
    batch_size(&x.shape, &plan.public.input.shape)
        .with_context(|| format!("input {}", input.display()))?;
    if let Some(i) = x.data.iter().position(|v| v.is_nan()) {
        bail!("input {}: element {i} is NaN", input.display());
    }
    Ok((plan, x))
}

/// Writes the centred outputs of every sample (dequantized, or raw with `--raw`).
fn write_outputs(
    path: &Path,
    raw: bool,
    plan: &Plan,
    input_shape: &[usize],
    outputs: &[Vec<i64>],
) -> anyhow::Result<()> {
    let p = &plan.public;
    let mut shape = p.output.shape.clone();
    if let Some(n) = batch_size(input_shape, &p.input.shape)? {
        shape.insert(0, n);
    }
    let values = outputs.concat();
    let written = if raw {
        let zero_point = p.tensors[p.output.tensor.0 as usize].zero_point;
        let data = values
            .iter()
            .map(|&v| {
                v.checked_add(zero_point)
                    .and_then(|q| i32::try_from(q).ok())
            })
            .collect::<Option<Vec<i32>>>()
            .context("a quantized output does not fit int32")?;
        npy::write(path, NpyArray { shape, data })
    } else {
        let data = reference::dequantize_output(p, &values);
        npy::write(path, NpyArray { shape, data })
    };
    written.context("writing the output")
}

/// One sample: quantize, run, return the centred outputs.
fn run_sample(plan: &Plan, x: &[f32]) -> anyhow::Result<Vec<i64>> {
    let v = reference::quantize_input(&plan.public, x);
    Ok(reference::run(plan, &v)?)
}

/// `None` for one sample of the input shape, `Some(N)` for `[N, ...input shape]`.
fn batch_size(shape: &[usize], sample: &[usize]) -> anyhow::Result<Option<usize>> {
    if shape == sample {
        Ok(None)
    } else if shape.len() == sample.len() + 1 && shape[1..] == *sample {
        Ok(Some(shape[0]))
    } else {
        let dims: Vec<String> = sample.iter().map(ToString::to_string).collect();
        bail!(
            "shape {shape:?} is neither the plan's input shape {sample:?} nor [N, {}]",
            dims.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
        CalibrateCli::command().debug_assert();
    }

    #[test]
    fn batch_shapes() {
        assert_eq!(batch_size(&[1, 4, 4], &[1, 4, 4]).unwrap(), None);
        assert_eq!(batch_size(&[5, 1, 4, 4], &[1, 4, 4]).unwrap(), Some(5));
        assert_eq!(batch_size(&[0, 3], &[3]).unwrap(), Some(0));
        let err = batch_size(&[4, 4], &[1, 4, 4]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape [4, 4] is neither the plan's input shape [1, 4, 4] nor [N, 1, 4, 4]"
        );
    }
}
