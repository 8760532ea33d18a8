//! Measured two-party runs: a plan executed by the real protocols in child processes, with the
//! wall time, the bytes each way and the peak memory of each party, every layer's measured
//! bytes checked against the prediction and the output against the reference executor.
//!
//! The parties run in a child process `heq-bench sim-party` ([`run_sim_party`]): the server
//! and the client on two threads of one process (`heq_runtime::party::sim`, an in-memory
//! channel, real OT over a loopback QUIC connection), so the peak memory is that of both
//! parties in one process.

use crate::machine;
use heq_runtime::cost::plan::Traffic;
use heq_runtime::npy::{self, NpyArray};
use heq_runtime::party::{Report, sim};
use heq_runtime::plan::{Plan, read_plan, write_plan};
use heq_runtime::reference;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Threads of the rayon pool of a `heq-bench sim-party` process: the silent-OT receivers of
/// both parties block a worker each while they wait for their peer, so the pool is larger than
/// the machine (as in the end-to-end tests).
pub const SIM_RAYON_THREADS: usize = 8;

/// Largest relative difference between a layer's measured and predicted bytes that passes.
pub const TOLERANCE: f64 = 1e-3;

/// Why a measured run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A file could not be read or written.
    #[error("{what} {}", path.display())]
    Io {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A plan could not be written or read.
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
    /// A report is not the expected JSON.
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
    /// The two-party run failed.
    #[error("two-party run")]
    Party(#[source] heq_runtime::party::PartyError),
    /// The reference executor failed on the plan.
    #[error("reference executor")]
    Reference(#[source] heq_runtime::error::ExecError),
    /// Some layer's measured bytes differ from the prediction by more than [`TOLERANCE`].
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

/// Bytes each way and rounds, as recorded in JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bytes {
    /// Client → server.
    pub up: u64,
    /// Server → client.
    pub down: u64,
    /// Rounds.
    pub rounds: u64,
}

impl From<Traffic> for Bytes {
    fn from(t: Traffic) -> Self {
        Bytes {
            up: t.bytes_up,
            down: t.bytes_down,
            rounds: t.rounds,
        }
    }
}

/// One row of a party's report: setup, a layer, or the reveal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRow {
    /// `setup`, `reveal` or the layer's op kind.
    pub name: String,
    /// The layer index, for layers.
    pub layer: Option<u32>,
    /// Bytes on the channel.
    pub measured: Bytes,
    /// Bytes the plan's cost model predicted.
    pub predicted: Bytes,
    /// This party's wall time in the row, seconds.
    pub time_s: f64,
}

fn rows(report: &Report) -> Vec<LayerRow> {
    report
        .rows
        .iter()
        .map(|r| LayerRow {
            name: r.name.clone(),
            layer: r.layer.map(|l| l.0),
            measured: r.measured.into(),
            predicted: r.predicted.into(),
            time_s: r.time.as_secs_f64(),
        })
        .collect()
}

/// What the `heq-bench sim-party` child writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    /// The server's rows.
    pub server: Vec<LayerRow>,
    /// The client's rows.
    pub client: Vec<LayerRow>,
    /// The centred output values the client reconstructed.
    pub output: Vec<i64>,
    /// Peak resident memory of the process (both parties), bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Threads of the process's rayon pool.
    pub rayon_threads: usize,
}

/// The body of `heq-bench sim-party`: runs `plan` on the sample in `input` with both parties
/// in this process and writes a [`SimReport`] to `report`. Sets up the global rayon pool with
/// [`SIM_RAYON_THREADS`] threads, so call it before anything else uses rayon.
///
/// # Errors
/// Unreadable files, a failed run, an unwritable report.
pub fn run_sim_party(plan: &Path, input: &Path, seed: u64, report: &Path) -> Result<(), RunError> {
    // Fails only when the pool is already set up, which then serves as it is.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(SIM_RAYON_THREADS)
        .build_global();
    let plan = read_plan(plan).map_err(|source| RunError::Plan {
        path: plan.to_path_buf(),
        source,
    })?;
    let x = npy::read_f32(input).map_err(|source| RunError::Npy {
        path: input.to_path_buf(),
        source,
    })?;
    let v = reference::quantize_input(&plan.public, &x.data);
    let backend = plan.public.protocol.ot;
    let run = sim::run(&plan, &[v], backend, seed)
        .map_err(RunError::Party)?
        .pop()
        .expect("one run per sample");
    let out = SimReport {
        server: rows(&run.server),
        client: rows(&run.client),
        output: run.output,
        peak_rss_bytes: machine::peak_rss_bytes(),
        rayon_threads: rayon::current_num_threads(),
    };
    let json = serde_json::to_vec_pretty(&out).map_err(|source| RunError::Report {
        path: report.to_path_buf(),
        source,
    })?;
    std::fs::write(report, json).map_err(|source| RunError::Io {
        what: "writing the report",
        path: report.to_path_buf(),
        source,
    })
}

/// One party's measured totals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartyTotals {
    /// Channel bytes and rounds this party counted.
    pub channel: Bytes,
    /// This party's time in the protocol (sum of its rows), seconds.
    pub time_s: f64,
}

/// A measured two-party run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// How the parties ran.
    pub parties: String,
    /// Wall time of the run, process start to exit, seconds.
    pub wall_s: f64,
    /// The server's totals.
    pub server: PartyTotals,
    /// The client's totals.
    pub client: PartyTotals,
    /// Peak resident memory of the process running both parties, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Threads: the party process's rayon pool and the simulation's tokio runtime.
    pub threads: String,
    /// Rows checked against the prediction (both parties).
    pub rows_checked: usize,
    /// Largest relative difference between measured and predicted bytes over all rows.
    pub max_deviation: f64,
    /// Whether the output equals the reference executor's (always true in a result: a
    /// difference fails the run).
    pub output_equals_reference: bool,
    /// The client's rows.
    pub client_rows: Vec<LayerRow>,
}

/// Runs `plan` in a `heq-bench sim-party` child (`heq_bench`: that binary) on one seeded
/// random sample, with the files in `dir`; checks every row's bytes against the prediction
/// and the output against the reference executor.
///
/// # Errors
/// File and child-process failures, a byte mismatch beyond [`TOLERANCE`] on any row
/// ([`RunError::Bytes`]), an output that differs from the reference ([`RunError::Output`]).
pub fn measure(plan: &Plan, heq_bench: &Path, dir: &Path, seed: u64) -> Result<Measured, RunError> {
    std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
        what: "creating",
        path: dir.to_path_buf(),
        source,
    })?;
    let plan_path = dir.join("server.plan");
    write_plan(plan, &plan_path).map_err(|source| RunError::Plan {
        path: plan_path.clone(),
        source,
    })?;
    let input_path = dir.join("input.npy");
    let x = random_input(plan, seed);
    npy::write(
        &input_path,
        NpyArray {
            shape: plan.public.input.shape.clone(),
            data: x.clone(),
        },
    )
    .map_err(|source| RunError::Npy {
        path: input_path.clone(),
        source,
    })?;
    let report_path = dir.join("report.json");
    let mut cmd = Command::new(heq_bench);
    cmd.arg("sim-party")
        .arg("--plan")
        .arg(&plan_path)
        .arg("--input")
        .arg(&input_path)
        .arg("--seed")
        .arg(seed.to_string())
        .arg("--report")
        .arg(&report_path);
    let start = Instant::now();
    let out = cmd.output().map_err(|source| RunError::Io {
        what: "starting",
        path: heq_bench.to_path_buf(),
        source,
    })?;
    let wall_s = start.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(RunError::Child {
            what: format!("{cmd:?}"),
            status: out.status,
            stderr: tail(&String::from_utf8_lossy(&out.stderr), 40),
        });
    }
    let text = std::fs::read(&report_path).map_err(|source| RunError::Io {
        what: "reading",
        path: report_path.clone(),
        source,
    })?;
    let report: SimReport = serde_json::from_slice(&text).map_err(|source| RunError::Report {
        path: report_path.clone(),
        source,
    })?;
    let (checked_s, dev_s) = check_rows("server", &report.server)?;
    let (checked_c, dev_c) = check_rows("client", &report.client)?;
    let v = reference::quantize_input(&plan.public, &x);
    let want = reference::run(plan, &v).map_err(RunError::Reference)?;
    let differing = want
        .iter()
        .zip(&report.output)
        .filter(|(a, b)| a != b)
        .count()
        + want.len().abs_diff(report.output.len());
    if differing > 0 {
        return Err(RunError::Output {
            differing,
            len: want.len(),
        });
    }
    Ok(Measured {
        parties: "both parties in one process (heq_runtime::party::sim: two threads, in-memory \
                  channel, OT over loopback QUIC)"
            .into(),
        wall_s,
        server: totals(&report.server),
        client: totals(&report.client),
        peak_rss_bytes: report.peak_rss_bytes,
        threads: format!(
            "rayon {} threads, tokio 2 workers (party::sim's runtime)",
            report.rayon_threads
        ),
        rows_checked: checked_s + checked_c,
        max_deviation: dev_s.max(dev_c),
        output_equals_reference: true,
        client_rows: report.client,
    })
}

/// A party's totals over its rows.
fn totals(rows: &[LayerRow]) -> PartyTotals {
    let channel = rows.iter().fold(Bytes::default(), |t, r| Bytes {
        up: t.up + r.measured.up,
        down: t.down + r.measured.down,
        rounds: t.rounds + r.measured.rounds,
    });
    PartyTotals {
        channel,
        time_s: rows.iter().map(|r| r.time_s).sum(),
    }
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
        let d = deviation(r.measured.up, r.predicted.up)
            .max(deviation(r.measured.down, r.predicted.down));
        worst = worst.max(d);
        if d > TOLERANCE {
            bad += &format!(
                "  {party} {} {}: measured {} up {} down, predicted {} up {} down\n",
                r.layer.map_or("-".into(), |l| l.to_string()),
                r.name,
                r.measured.up,
                r.measured.down,
                r.predicted.up,
                r.predicted.down
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
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    use super::*;

    fn row(m: (u64, u64), p: (u64, u64)) -> LayerRow {
        LayerRow {
            name: "Conv".into(),
            layer: Some(3),
            measured: Bytes {
                up: m.0,
                down: m.1,
                rounds: 2,
            },
            predicted: Bytes {
                up: p.0,
                down: p.1,
                rounds: 2,
            },
            time_s: 0.0,
        }
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
            "measured bytes differ from the prediction by more than 0.1 %:\n  server 3 Conv: \
             measured 1000 up 1002 down, predicted 1000 up 1000 down\n"
        );
    }
}
