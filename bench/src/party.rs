//! Measured two-party runs: a plan executed by `heq-run` in child processes, with the wall
//! time, the bytes each way and the peak memory of each party, every row's measured bytes
//! checked against the prediction and the output against the reference executor.
//!
//! [`Parties::Network`] starts two processes, `heq-run --role server --listen 127.0.0.1:0
//! --sessions 1` and `heq-run --role client --connect ADDR --server-fingerprint FP`, over one
//! loopback QUIC connection; [`Parties::Sim`] starts one `heq-run --mode sim` (both parties on
//! two threads of one process). Each writes its report (`--report`, `docs/report.md`).

use heq_runtime::npy::{self, NpyArray};
use heq_runtime::plan::{Plan, write_plan};
use heq_runtime::reference;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// Largest relative difference between a row's measured and predicted bytes that passes.
pub const TOLERANCE: f64 = 1e-3;

/// How long a party waits for its peer before failing (`heq-run --timeout`), seconds.
const PEER_TIMEOUT_S: u64 = 1800;

/// Why a measured run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A file could not be read or written, or a process not started.
    #[error("{what} {}", path.display())]
    Io {
        /// What was done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The plan could not be written.
    #[error("plan {}", path.display())]
    Plan {
        /// The file.
        path: PathBuf,
        /// The plan error.
        #[source]
        source: heq_runtime::error::PlanError,
    },
    /// An `.npy` file could not be written or read.
    #[error("npy {}", path.display())]
    Npy {
        /// The file.
        path: PathBuf,
        /// The npy error.
        #[source]
        source: heq_runtime::error::NpyError,
    },
    /// A report is not the JSON of `docs/report.md`.
    #[error("report {}", path.display())]
    Report {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A party process failed.
    #[error("{what} exited with {status}:\n{stderr}")]
    Child {
        /// The command.
        what: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The tail of its stderr.
        stderr: String,
    },
    /// The server never printed the address it listens on.
    #[error("the server did not print its address:\n{0}")]
    NoAddress(String),
    /// The reference executor failed on the plan.
    #[error("reference executor")]
    Reference(#[source] heq_runtime::error::ExecError),
    /// Some row's measured bytes differ from the prediction by more than [`TOLERANCE`].
    #[error("measured bytes differ from the prediction by more than 0.1 %:\n{0}")]
    Bytes(String),
    /// The two-party output differs from the reference executor's.
    #[error(
        "the two-party output differs from the reference executor in {differing} of {len} values"
    )]
    Output {
        /// Differing values.
        differing: usize,
        /// Output values.
        len: usize,
    },
}

/// How the two parties of a measured run are executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Parties {
    /// Two `heq-run` processes, server and client, over a loopback QUIC connection.
    Network,
    /// One `heq-run --mode sim` process: both parties on two threads, an in-memory channel,
    /// the OT extension over loopback QUIC.
    Sim,
}

impl Parties {
    /// Lower-case name (the `--parties` value).
    pub fn name(self) -> &'static str {
        match self {
            Parties::Network => "network",
            Parties::Sim => "sim",
        }
    }

    /// A description for the results.
    pub fn describe(self) -> &'static str {
        match self {
            Parties::Network => {
                "two processes (heq-run --role server / --role client) over loopback QUIC"
            }
            Parties::Sim => "both parties in one process (heq-run --mode sim)",
        }
    }
}

/// Bytes each way and rounds (`docs/report.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Client → server.
    pub bytes_up: u64,
    /// Server → client.
    pub bytes_down: u64,
    /// Rounds.
    pub rounds: u64,
}

/// One row of a party's report: setup, a layer, or the reveal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRow {
    /// `setup`, `reveal` or the layer's op kind.
    pub name: String,
    /// The layer id (`l3`), for layers.
    pub layer: Option<String>,
    /// Bytes on the channel.
    pub measured: Traffic,
    /// Bytes the plan's cost model predicted.
    pub predicted: Traffic,
    /// This party's wall time in the row, milliseconds.
    pub wall_ms: f64,
}

/// The part of a `heq-run --report` file the benchmark reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartyReport {
    /// `server`, `client` or `sim`.
    pub role: String,
    /// Wall time of the session, milliseconds.
    pub wall_ms: f64,
    /// Peak resident memory of the process, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Setup, one row per layer, reveal.
    pub layers: Vec<LayerRow>,
    /// The sum of the rows.
    pub total: LayerRow,
    /// Whether heq-run found every row within 0.1 % of the prediction.
    pub matches_prediction: bool,
    /// The OT extension beside the channel.
    #[serde(default)]
    pub ot_extension: Option<OtExtension>,
}

/// The OT extension's bytes in a `heq-run --report` file (`docs/report.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OtExtension {
    /// Client → server bytes, measured if `source` is `measured`, else predicted.
    pub bytes_up: u64,
    /// Server → client bytes.
    pub bytes_down: u64,
    /// `measured` (network roles) or `predicted` (`--mode sim`).
    pub source: String,
    /// The cost model's client → server bytes.
    pub predicted_bytes_up: u64,
    /// The cost model's server → client bytes.
    pub predicted_bytes_down: u64,
}

impl OtExtension {
    /// Whether the bytes were measured on the connection.
    pub fn is_measured(&self) -> bool {
        self.source == "measured"
    }

    /// The extension as a row to check against its prediction.
    fn row(&self) -> LayerRow {
        LayerRow {
            name: "OT extension".into(),
            layer: None,
            measured: Traffic {
                bytes_up: self.bytes_up,
                bytes_down: self.bytes_down,
                rounds: 0,
            },
            predicted: Traffic {
                bytes_up: self.predicted_bytes_up,
                bytes_down: self.predicted_bytes_down,
                rounds: 0,
            },
            wall_ms: 0.0,
        }
    }
}

impl PartyReport {
    fn read(path: &Path) -> Result<Self, RunError> {
        let text = std::fs::read(path).map_err(|source| RunError::Io {
            what: "reading",
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| RunError::Report {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// A measured two-party run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// How the parties ran.
    pub parties: Parties,
    /// Threads of each `heq-run` process ([`heq_run_threads`]).
    pub threads: String,
    /// Wall time of the run, first process start to last exit, seconds.
    pub wall_s: f64,
    /// The reports: server and client ([`Parties::Network`]) or the one of `sim`.
    pub reports: Vec<PartyReport>,
    /// Rows checked against the prediction (all reports; with the OT extension of each party
    /// whose report measured it).
    pub rows_checked: usize,
    /// Largest relative difference between measured and predicted bytes over all rows.
    pub max_deviation: f64,
    /// Whether the output equals the reference executor's (always true in a result: a
    /// difference fails the run).
    pub output_equals_reference: bool,
}

impl Measured {
    /// The report of `role` (`server`, `client` or `sim`).
    pub fn report(&self, role: &str) -> Option<&PartyReport> {
        self.reports.iter().find(|r| r.role == role)
    }

    /// The client's view of the channel: the client's report, or the simulation's.
    pub fn client_view(&self) -> Option<&PartyReport> {
        self.report("client").or_else(|| self.report("sim"))
    }
}

/// The threads of a `heq-run` process on this machine, as `heq-run` sets them up: a rayon pool
/// of `max(4, cores)` threads and a tokio runtime of 2 workers.
pub fn heq_run_threads() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "per heq-run process: rayon {} threads (max(4, cores)), tokio 2 workers",
        cores.max(4)
    )
}

/// Runs `plan` with `heq_run` as `parties` on one seeded random sample, with the files in
/// `dir`; checks every row's bytes against the prediction and the output against the
/// reference executor.
///
/// # Errors
/// File and child-process failures, a byte mismatch beyond [`TOLERANCE`] on any row
/// ([`RunError::Bytes`]), an output that differs from the reference ([`RunError::Output`]).
pub fn measure(
    plan: &Plan,
    parties: Parties,
    heq_run: &Path,
    dir: &Path,
    seed: u64,
) -> Result<Measured, RunError> {
    std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
        what: "creating",
        path: dir.to_path_buf(),
        source,
    })?;
    let server_plan = dir.join("server.plan");
    let client_plan = dir.join("client.plan");
    for (p, path) in [
        (plan.clone(), &server_plan),
        (plan.to_client(), &client_plan),
    ] {
        write_plan(&p, path).map_err(|source| RunError::Plan {
            path: path.clone(),
            source,
        })?;
    }
    let input = dir.join("input.npy");
    let output = dir.join("output.npy");
    let x = random_input(plan, seed);
    npy::write(
        &input,
        NpyArray {
            shape: plan.public.input.shape.clone(),
            data: x.clone(),
        },
    )
    .map_err(|source| RunError::Npy {
        path: input.clone(),
        source,
    })?;
    let timeout = PEER_TIMEOUT_S.to_string();
    let start = Instant::now();
    let report_paths = match parties {
        Parties::Network => {
            let server_report = dir.join("server.json");
            let client_report = dir.join("client.json");
            let mut server = Command::new(heq_run);
            server
                .arg("--plan")
                .arg(&server_plan)
                .args([
                    "--role",
                    "server",
                    "--listen",
                    "127.0.0.1:0",
                    "--sessions",
                    "1",
                ])
                .args(["--timeout", &timeout])
                .arg("--report")
                .arg(&server_report);
            let (child, addr, fingerprint, stderr) = start_server(server, heq_run)?;
            let mut client = Command::new(heq_run);
            client
                .arg("--plan")
                .arg(&client_plan)
                .args(["--role", "client", "--connect", &addr])
                .args(["--server-fingerprint", &fingerprint])
                .args(["--timeout", &timeout])
                .arg("--input")
                .arg(&input)
                .arg("--output")
                .arg(&output)
                .arg("--report")
                .arg(&client_report);
            let client_result = run(client, heq_run);
            let server_result = finish(child, stderr, "heq-run --role server");
            // A failing server makes the client fail with "the peer closed the connection":
            // the server's error is the cause.
            server_result?;
            client_result?;
            vec![server_report, client_report]
        }
        Parties::Sim => {
            let report = dir.join("sim.json");
            let mut sim = Command::new(heq_run);
            sim.arg("--plan")
                .arg(&server_plan)
                .args(["--mode", "sim", "--seed", &seed.to_string()])
                .arg("--input")
                .arg(&input)
                .arg("--output")
                .arg(&output)
                .arg("--report")
                .arg(&report);
            run(sim, heq_run)?;
            vec![report]
        }
    };
    let wall_s = start.elapsed().as_secs_f64();
    let reports = report_paths
        .iter()
        .map(|p| PartyReport::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows_checked = 0;
    let mut max_deviation = 0.0f64;
    for r in &reports {
        let ot = r
            .ot_extension
            .iter()
            .filter(|o| o.is_measured())
            .map(OtExtension::row);
        let rows: Vec<LayerRow> = r.layers.iter().cloned().chain(ot).collect();
        let (n, d) = check_rows(&r.role, &rows)?;
        rows_checked += n;
        max_deviation = max_deviation.max(d);
    }
    check_output(plan, &x, &output)?;
    Ok(Measured {
        parties,
        threads: heq_run_threads(),
        wall_s,
        reports,
        rows_checked,
        max_deviation,
        output_equals_reference: true,
    })
}

/// Starts the server and reads its stderr up to the line with the address and the
/// certificate fingerprint; the rest of its stderr is collected by a thread.
fn start_server(
    mut cmd: Command,
    heq_run: &Path,
) -> Result<(Child, String, String, std::thread::JoinHandle<String>), RunError> {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RunError::Io {
            what: "starting",
            path: heq_run.to_path_buf(),
            source,
        })?;
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
    let mut seen = String::new();
    let mut line = String::new();
    let found = loop {
        line.clear();
        match stderr.read_line(&mut line) {
            Ok(0) | Err(_) => break None,
            Ok(_) => seen += &line,
        }
        if let Some(found) = listening(&line) {
            break Some(found);
        }
    };
    let Some((addr, fingerprint)) = found else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(RunError::NoAddress(seen));
    };
    let rest = std::thread::spawn(move || {
        let mut text = seen;
        let _ = stderr.read_to_string(&mut text);
        text
    });
    Ok((child, addr, fingerprint, rest))
}

/// The address and fingerprint of `heq-run server: listening on ADDR, certificate fingerprint
/// sha256:HEX`.
fn listening(line: &str) -> Option<(String, String)> {
    let rest = line.split_once("listening on ")?.1;
    let (addr, rest) = rest.split_once(", ")?;
    let fingerprint = rest.split_once("sha256:")?.1.trim();
    Some((addr.to_string(), fingerprint.to_string()))
}

/// Waits for the server; an error with its stderr when it failed.
fn finish(
    mut child: Child,
    stderr: std::thread::JoinHandle<String>,
    what: &str,
) -> Result<(), RunError> {
    let status = child.wait().map_err(|source| RunError::Io {
        what: "waiting for",
        path: what.into(),
        source,
    })?;
    let text = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(RunError::Child {
            what: what.into(),
            status,
            stderr: tail(&text, 40),
        })
    }
}

/// Runs a party to completion; an error with its stderr when it failed.
fn run(mut cmd: Command, heq_run: &Path) -> Result<(), RunError> {
    let out = cmd.output().map_err(|source| RunError::Io {
        what: "starting",
        path: heq_run.to_path_buf(),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RunError::Child {
            what: format!("{cmd:?}"),
            status: out.status,
            stderr: tail(&String::from_utf8_lossy(&out.stderr), 40),
        })
    }
}

/// Checks the client's output file against the reference executor on the same sample.
fn check_output(plan: &Plan, x: &[f32], output: &Path) -> Result<(), RunError> {
    let got = npy::read_f32(output).map_err(|source| RunError::Npy {
        path: output.to_path_buf(),
        source,
    })?;
    let v = reference::quantize_input(&plan.public, x);
    let y = reference::run(plan, &v).map_err(RunError::Reference)?;
    let want = reference::dequantize_output(&plan.public, &y);
    let differing = want
        .iter()
        .zip(&got.data)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count()
        + want.len().abs_diff(got.data.len());
    if differing > 0 {
        return Err(RunError::Output {
            differing,
            len: want.len(),
        });
    }
    Ok(())
}

/// Checks every row's measured bytes against the prediction; returns the rows checked and
/// the largest relative difference.
///
/// # Errors
/// [`RunError::Bytes`] listing every row beyond [`TOLERANCE`].
pub fn check_rows(party: &str, rows: &[LayerRow]) -> Result<(usize, f64), RunError> {
    let deviation = |m: u64, p: u64| m.abs_diff(p) as f64 / p.max(1) as f64;
    let mut worst = 0.0f64;
    let mut bad = String::new();
    for r in rows {
        let d = deviation(r.measured.bytes_up, r.predicted.bytes_up)
            .max(deviation(r.measured.bytes_down, r.predicted.bytes_down));
        worst = worst.max(d);
        if d > TOLERANCE {
            bad += &format!(
                "  {party} {} {}: measured {} up {} down, predicted {} up {} down\n",
                r.layer.as_deref().unwrap_or("-"),
                r.name,
                r.measured.bytes_up,
                r.measured.bytes_down,
                r.predicted.bytes_up,
                r.predicted.bytes_down
            );
        }
    }
    if bad.is_empty() {
        Ok((rows.len(), worst))
    } else {
        Err(RunError::Bytes(bad))
    }
}

/// A seeded random float sample in [−1, 1] of the plan's input shape.
pub fn random_input(plan: &Plan, seed: u64) -> Vec<f32> {
    let n: usize = plan.public.input.shape.iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..=1.0)).collect()
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(m: (u64, u64), p: (u64, u64)) -> LayerRow {
        LayerRow {
            name: "conv".into(),
            layer: Some("l3".into()),
            measured: Traffic {
                bytes_up: m.0,
                bytes_down: m.1,
                rounds: 2,
            },
            predicted: Traffic {
                bytes_up: p.0,
                bytes_down: p.1,
                rounds: 2,
            },
            wall_ms: 0.0,
        }
    }

    #[test]
    fn server_address_line() {
        let line =
            "heq-run server: listening on 127.0.0.1:4433, certificate fingerprint sha256:ab12\n";
        assert_eq!(
            listening(line),
            Some(("127.0.0.1:4433".into(), "ab12".into()))
        );
        assert_eq!(listening("heq-run server: serving\n"), None);
    }

    #[test]
    fn rows_within_tolerance_pass() {
        let (n, worst) = check_rows(
            "client",
            &[row((1000, 0), (1000, 0)), row((10_001, 5), (10_000, 5))],
        )
        .expect("within 0.1 %");
        assert_eq!(n, 2);
        assert!((worst - 1e-4).abs() < 1e-12);
    }

    #[test]
    fn rows_beyond_tolerance_fail() {
        let err = check_rows("server", &[row((1000, 1002), (1000, 1000))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "measured bytes differ from the prediction by more than 0.1 %:\n  server l3 conv: \
             measured 1000 up 1002 down, predicted 1000 up 1000 down\n"
        );
    }
}
