//! `--role client`: connects to a server (pinning its certificate if given), runs every
//! sample in one session ([`heq_runtime::party::net::client_session`]), reports and writes the
//! outputs.

use anyhow::{Context, bail};
use heq_runtime::nonlinear::Role;
use heq_runtime::party::Prepared;
use heq_runtime::party::net::{SessionOptions, client_session};
use heq_runtime::party::report::{self, OtJson, RunInfo, TransportJson, measured_ot};
use heq_runtime::transport::TransportError;
use heq_runtime::transport::net::connect;
use std::sync::Arc;
use std::time::Instant;

use super::progress::Bars;
use super::samples::{quantize, read_inputs, write_outputs};
use super::{RunArgs, finish_report, net_runtime, resolve};

/// Connects, runs every sample, reports, writes the outputs.
///
/// # Errors
/// An unreadable plan or input, a plan with weights (without `--allow-weights`), an
/// unreachable or unauthenticated server, a failed session, a failed write.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let (input_path, output_path) = args.io_paths()?;
    let (plan, input) = read_inputs(args.plan()?, input_path)?;
    if plan.weights.is_some() && !args.allow_weights {
        bail!(
            "{}: this plan carries the server's weights, which the client must not hold; \
             use the client plan (heqc compile --client-out), or --allow-weights",
            args.plan()?.display()
        );
    }
    let samples = Arc::new(quantize(&plan, &input));
    let plan = Arc::new(plan.to_client());
    let prepared = Arc::new(Prepared::new(&plan.public)?);
    let server = args.connect.as_deref().context("--connect is required")?;
    let addr = resolve(server, "server address")?;
    let rt = net_runtime()?;
    let opts = SessionOptions {
        timeout: args.timeout,
        progress: Some(Arc::new(Bars::stderr())),
    };
    let start = Instant::now();
    let (outputs, session) = rt.block_on(async {
        let connecting = connect(addr, args.server_fingerprint);
        let (peer, seen) = match args.timeout {
            Some(d) => tokio::time::timeout(d, connecting)
                .await
                .map_err(|_| TransportError::Timeout(d))
                .with_context(|| format!("connecting to {addr}"))??,
            None => connecting.await?,
        };
        if args.server_fingerprint.is_none() {
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
    finish_report(args, "heq-run client", &summed, info)?;
    write_outputs(output_path, args.raw, &plan, &input.shape, &outputs)
}
