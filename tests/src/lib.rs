//! Shared setup of the end-to-end tests: compile a bundled model with heqc, quantize fixture
//! samples, run both parties (`heq_runtime::party::sim`: two threads, in-memory channel,
//! cryprot OT over loopback QUIC; or `heq_runtime::party::net`: a server and a client session
//! over a real loopback QUIC connection) and compare with the reference executor.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use heq_runtime::nonlinear::Role;
use heq_runtime::party::net::{SessionOptions, SessionReport, client_session, serve_session};
use heq_runtime::party::report::{OtJson, measured_ot};
use heq_runtime::party::sim::{self, SimRun};
use heq_runtime::party::{DEFAULT_KERNEL_MEMORY, Prepared, Report, ServerLayers};
use heq_runtime::plan::{OtBackend, Plan};
use heq_runtime::reference::epilogue::{self, OutputData};
use heq_runtime::transport::net::{Identity, Listener, connect};
use heq_runtime::{npy, reference};

/// The repository's `models/` folder.
pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Compiles `models/<name>.onnx` with heqc's default profile.
///
/// # Errors
/// Whatever heqc reports.
pub fn compile(name: &str) -> anyhow::Result<Plan> {
    compile_with(name, heqc::select::Strategy::default())
}

/// [`compile`] with the optimizer's `strategy` (e.g. the latency objective, which chooses
/// log-depth carry trees).
///
/// # Errors
/// As [`compile`].
pub fn compile_with(name: &str, strategy: heqc::select::Strategy) -> anyhow::Result<Plan> {
    let path = models_dir().join(format!("{name}.onnx"));
    Ok(heqc::compile_path_with(&path, strategy)
        .with_context(|| format!("compiling {}", path.display()))?
        .selection
        .plan)
}

/// The first `n` samples of `models/inputs/digits_test_x.npy`, quantized for `plan`.
///
/// # Errors
/// An unreadable fixture or one whose samples do not have the plan's input size.
pub fn digits_inputs(plan: &Plan, n: usize) -> anyhow::Result<Vec<Vec<i64>>> {
    let x = npy::read_f32(&models_dir().join("inputs/digits_test_x.npy"))?;
    let len: usize = plan.public.input.shape.iter().product();
    ensure!(
        len > 0 && x.data.len() >= n * len,
        "fixture too small for {n} samples of {len} values"
    );
    Ok(x.data
        .chunks(len)
        .take(n)
        .map(|s| reference::quantize_input(&plan.public, s))
        .collect())
}

/// Checks that the model output the client computes from its revealed values (the plan's
/// epilogue: floats, or indices) equals the reference's bit for bit.
///
/// # Errors
/// An epilogue failure, or a different output.
pub fn check_model_output(plan: &Plan, revealed: &[i64], reference: &[i64]) -> anyhow::Result<()> {
    let bits = |y: &[i64]| -> anyhow::Result<Vec<u64>> {
        Ok(match epilogue::finish(&plan.public, y)?.data {
            OutputData::Float(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
            OutputData::Index(v) => v.iter().map(|&i| i as u64).collect(),
        })
    };
    ensure!(
        bits(revealed)? == bits(reference)?,
        "the model output after the epilogue differs from the reference"
    );
    Ok(())
}

/// Runs the first `n` digits samples through both parties with `backend`; checks that every
/// output (the revealed integers, and the model output after the epilogue) equals the reference
/// executor's and that every layer's measured traffic, in both parties' views, equals the
/// prediction. Returns the runs.
///
/// # Errors
/// A failed run, a different output, or traffic that differs from the prediction.
pub fn check_model(plan: &Plan, n: usize, backend: OtBackend) -> anyhow::Result<Vec<SimRun>> {
    let inputs = digits_inputs(plan, n)?;
    let runs = sim::run(plan, &inputs, backend, DEFAULT_KERNEL_MEMORY, 7)?;
    for (i, (run, input)) in runs.iter().zip(&inputs).enumerate() {
        let want = reference::run(plan, input)?;
        ensure!(
            run.output == want,
            "sample {i}: output differs from the reference"
        );
        check_model_output(plan, &run.output, &want).with_context(|| format!("sample {i}"))?;
        for report in [&run.server, &run.client] {
            check_rows(report).with_context(|| format!("sample {i}"))?;
        }
    }
    Ok(runs)
}

/// Checks that every row's measured traffic equals the prediction.
///
/// # Errors
/// The first row whose measured traffic differs.
pub fn check_rows(report: &Report) -> anyhow::Result<()> {
    for row in &report.rows {
        ensure!(
            row.measured == row.predicted,
            "{} {:?}: measured {:?}, predicted {:?}",
            row.name,
            row.layer,
            row.measured,
            row.predicted
        );
    }
    Ok(())
}

/// Runs the first `n` digits samples over a real loopback QUIC connection: a server session
/// and a client session in this process, the client pinning the server's self-signed
/// certificate, the plan's OT backend. Checks that every output (revealed, and after the
/// epilogue) equals the reference executor's, that every row of both parties' reports equals the prediction, and that the OT
/// extension's bytes on the connection equal the cost model's. Returns the (server, client)
/// reports.
///
/// # Errors
/// A failed session, a different output, or traffic that differs from the prediction.
pub fn check_model_net(plan: &Plan, n: usize) -> anyhow::Result<(SessionReport, SessionReport)> {
    let inputs = digits_inputs(plan, n)?;
    let want = inputs
        .iter()
        .map(|x| reference::run(plan, x))
        .collect::<Result<Vec<_>, _>>()?;
    let server_plan = Arc::new(plan.clone());
    let client_plan = Arc::new(plan.to_client());
    let prepared = Arc::new(Prepared::new(&plan.public)?);
    let weights = plan.weights.as_ref().context("the plan has no weights")?;
    let layers = ServerLayers::new(&plan.public, &prepared, weights, DEFAULT_KERNEL_MEMORY)?;
    let layers = Arc::new(layers);
    let opts = SessionOptions {
        timeout: Some(Duration::from_secs(120)),
        progress: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (server, (outputs, client)) = rt.block_on(async {
        let identity = Identity::generate()?;
        let mut listener = Listener::bind(([127, 0, 0, 1], 0).into(), &identity)?;
        let addr = listener.local_addr();
        let (p, o) = (prepared.clone(), opts.clone());
        let prepared = prepared.clone();
        // Each party in its own task: a party's driver blocks its worker thread.
        let server = tokio::spawn(async move {
            let peer = listener.accept().await.context("no client")??;
            anyhow::Ok(serve_session(peer, server_plan, p, layers, &o).await?)
        });
        let pin = identity.fingerprint();
        let client = tokio::spawn(async move {
            let (peer, _) = connect(addr, Some(pin)).await?;
            anyhow::Ok(client_session(peer, client_plan, prepared, Arc::new(inputs), &opts).await?)
        });
        let (server, client) = tokio::try_join!(server, client)?;
        anyhow::Ok((server?, client?))
    })?;
    ensure!(outputs == want, "the outputs differ from the reference");
    for (i, (ours, reference)) in outputs.iter().zip(&want).enumerate() {
        check_model_output(plan, ours, reference).with_context(|| format!("sample {i}"))?;
    }
    for (i, (s, c)) in server.samples.iter().zip(&client.samples).enumerate() {
        check_rows(s).with_context(|| format!("server, sample {i}"))?;
        check_rows(c).with_context(|| format!("client, sample {i}"))?;
    }
    ensure!(server.samples.len() == n && client.samples.len() == n);
    let ot = OtJson::predicted(&prepared.cost, plan.public.protocol.ot, 1, n as u64);
    for (role, r) in [(Role::Server, &server), (Role::Client, &client)] {
        let measured = measured_ot(role, r.frames, r.quic);
        ensure!(
            measured == (ot.predicted_bytes_up, ot.predicted_bytes_down),
            "{role:?}: OT extension measured {measured:?}, predicted {:?}",
            (ot.predicted_bytes_up, ot.predicted_bytes_down)
        );
    }
    Ok((server, client))
}

/// Makes the global rayon pool large enough for both parties in one process (the silent-OT
/// receiver blocks a worker while it waits for the peer).
pub fn init_rayon() {
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(8)
        .build_global();
}
