//! Shared setup of the end-to-end tests: compile a bundled model with heqc, quantize fixture
//! samples, run both parties (`heq_runtime::party::sim`: two threads, in-memory channel,
//! cryprot OT over loopback QUIC) and compare with the reference executor.

use std::path::PathBuf;

use anyhow::{Context, ensure};
use heq_runtime::party::sim::{self, SimRun};
use heq_runtime::plan::{OtBackend, Plan};
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
    let path = models_dir().join(format!("{name}.onnx"));
    Ok(heqc::compile_path(&path)
        .with_context(|| format!("compiling {}", path.display()))?
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

/// Runs the first `n` digits samples through both parties with `backend`; checks that every
/// output equals the reference executor's and that every layer's measured traffic, in both
/// parties' views, equals the prediction. Returns the runs.
///
/// # Errors
/// A failed run, a different output, or traffic that differs from the prediction.
pub fn check_model(plan: &Plan, n: usize, backend: OtBackend) -> anyhow::Result<Vec<SimRun>> {
    let inputs = digits_inputs(plan, n)?;
    let runs = sim::run(plan, &inputs, backend, 7)?;
    for (i, (run, input)) in runs.iter().zip(&inputs).enumerate() {
        let want = reference::run(plan, input)?;
        ensure!(
            run.output == want,
            "sample {i}: output differs from the reference"
        );
        for report in [&run.server, &run.client] {
            for row in &report.rows {
                ensure!(
                    row.measured == row.predicted,
                    "sample {i}, {} {:?}: measured {:?}, predicted {:?}",
                    row.name,
                    row.layer,
                    row.measured,
                    row.predicted
                );
            }
        }
    }
    Ok(runs)
}

/// Makes the global rayon pool large enough for both parties in one process (the silent-OT
/// receiver blocks a worker while it waits for the peer).
pub fn init_rayon() {
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(8)
        .build_global();
}
