//! `--role server`: prepares its linear layers ([`heq_runtime::party::ServerLayers`], kernels
//! within `--kernel-memory`), then listens, prints its address and certificate fingerprint,
//! serves client sessions ([`heq_runtime::party::net::serve`]) and reports after each one.

use anyhow::{Context, bail};
use heq_runtime::nonlinear::Role;
use heq_runtime::party::net::{ServeOptions, SessionEnd, SessionOptions, serve};
use heq_runtime::party::report::{self, OtJson, RunInfo, TransportJson, measured_ot};
use heq_runtime::party::{Prepared, Report, ServerLayers};
use heq_runtime::plan::read_plan;
use heq_runtime::transport::net::{Identity, Listener};
use std::sync::Arc;
use std::time::Duration;

use super::progress::Bars;
use super::{RunArgs, finish_report, net_runtime, resolve};

/// A server with `--sessions` saw failed sessions (each already reported).
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {sessions} sessions failed")]
pub struct ServerFailed {
    failed: u64,
    sessions: u64,
    mismatch: bool,
}

impl ServerFailed {
    /// Whether a session failed on a plan or version mismatch (exit code 3).
    pub fn is_mismatch(&self) -> bool {
        self.mismatch
    }
}

/// Listens, serves sessions, reports.
///
/// # Errors
/// An unreadable plan or one without weights, an unusable certificate or address, failed
/// sessions (with `--sessions`).
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let path = args.plan()?;
    let mut plan = read_plan(path).with_context(|| format!("reading plan {}", path.display()))?;
    let Some(weights) = plan.weights.take() else {
        bail!(
            "{}: this plan has no weights; the server needs the plan with weights \
             (heqc compile -o)",
            path.display()
        );
    };
    let prepared = Arc::new(Prepared::new(&plan.public)?);
    // Before listening: no client waits for the preparation. The weights live on in `layers`
    // only.
    eprintln!(
        "heq-run server: preparing the linear layers, kernels up to {} MiB",
        args.kernel_memory
    );
    let layers = ServerLayers::new(
        &plan.public,
        &prepared,
        &weights,
        args.kernel_memory_bytes(),
    )?;
    drop(weights);
    let stats = layers.stats();
    eprintln!(
        "heq-run server: prepared the kernels of {} of {} linear layers ({:.1} of {:.1} MiB) \
         in {:.1} s",
        stats.prepared_layers,
        stats.layers,
        mib(stats.prepared_bytes),
        mib(stats.total_bytes),
        stats.time.as_secs_f64()
    );
    let identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => Identity::from_pem_files(cert, key)?,
        _ => Identity::generate()?,
    };
    let listen = args.listen.as_deref().context("--listen is required")?;
    let addr = resolve(listen, "listen address")?;
    let rt = net_runtime()?;
    let mut listener = rt.block_on(async { Listener::bind(addr, &identity) })?;
    eprintln!(
        "heq-run server: listening on {}, certificate fingerprint sha256:{}",
        listener.local_addr(),
        identity.fingerprint()
    );
    let opts = ServeOptions {
        max_sessions: usize::try_from(args.max_sessions).unwrap_or(usize::MAX),
        sessions: args.sessions,
        session: SessionOptions {
            timeout: args.timeout,
            progress: Some(Arc::new(Bars::stderr())),
        },
    };
    let plan = Arc::new(plan);
    let layers = Arc::new(layers);
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
            if let Err(e) = finish_report(args, &title, &all, info) {
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
        layers,
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

/// Bytes in MiB.
fn mib(bytes: usize) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}
