//! Both parties in one process (`heq-run --mode sim`): the server and the client on two
//! threads over an in-memory channel, with real cryprot-ot random OTs over a loopback QUIC
//! connection made by the network transport itself ([`crate::transport::net::loopback`]: a
//! fresh self-signed certificate, pinned).
//!
//! The OT extension runs for each of the plan's OT batches, for exactly the ROTs the plan's
//! schedule predicts ([`crate::cost::plan::PlanCost::ot_batches`]), each party driving its
//! source from its own thread.

use super::{PartyError, Prepared, Report, ServerLayers, run_client, run_server};
use crate::nonlinear::Role;
use crate::ot::cryprot::CryprotOt;
use crate::ot::{Side, with_prefetch};
use crate::plan::{OtBackend, Plan, ServerWeights};
use crate::transport::bridge::Bridge;
use crate::transport::memory::pipe;
use crate::transport::net::loopback;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The result of one simulated sample.
#[derive(Clone, Debug)]
pub struct SimRun {
    /// Centred output values the client reconstructed.
    pub output: Vec<i64>,
    /// The server's report.
    pub server: Report,
    /// The client's report.
    pub client: Report,
}

/// Runs every sample of `inputs` (centred values) through both parties with OT `backend`;
/// the server prepares its layers once with `kernel_memory` bytes for kernels
/// ([`ServerLayers::new`]); `seed` seeds both parties' randomness (sample `i` uses
/// `seed + 2i` and `seed + 2i + 1`).
///
/// The cryprot-ot silent OT receiver blocks a rayon worker while it waits for the peer: with
/// both parties in one process the global rayon pool needs at least 4 threads.
///
/// # Errors
/// [`PartyError`] from scheduling, the connection, the OT extension or either party.
pub fn run(
    plan: &Plan,
    inputs: &[Vec<i64>],
    backend: OtBackend,
    kernel_memory: usize,
    seed: u64,
) -> Result<Vec<SimRun>, PartyError> {
    let prepared = Prepared::with_backend(&plan.public, backend)?;
    let no_weights = ServerWeights::default();
    let weights = plan.weights.as_ref().unwrap_or(&no_weights);
    let layers = ServerLayers::new(&plan.public, &prepared, weights, kernel_memory)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| PartyError::Sim(e.to_string()))?;
    let mut connection = rt
        .block_on(loopback())
        .map_err(|e| PartyError::Sim(format!("loopback connection: {e}")))?;
    let _enter = rt.enter();
    let mut server_ot = CryprotOt::new(backend, Side::Server, &mut connection.server.conn);
    let mut client_ot = CryprotOt::new(backend, Side::Client, &mut connection.client.conn);
    let bridge = Bridge::new(rt.handle().clone(), None);
    let mut runs = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let (mut se, mut ce) = pipe();
        let s_seed = seed.wrapping_add(2 * i as u64);
        let (prepared, layers) = (&prepared, &layers);
        let (server_ot, client_ot) = (&mut server_ot, &mut client_ot);
        let server_bridge = bridge.clone();
        let (server, client) = std::thread::scope(|scope| {
            let server = scope.spawn(move || {
                let mut rng = ChaCha20Rng::seed_from_u64(s_seed);
                let groups = prepared.ot_groups(Role::Server);
                with_prefetch(server_ot, server_bridge, groups, |ot| {
                    run_server(&plan.public, layers, prepared, &mut se, ot, &mut rng)
                })
            });
            let mut rng = ChaCha20Rng::seed_from_u64(s_seed.wrapping_add(1));
            let groups = prepared.ot_groups(Role::Client);
            let client = with_prefetch(client_ot, bridge.clone(), groups, |ot| {
                run_client(&plan.public, input, prepared, &mut ce, ot, &mut rng)
            });
            // A failed client drops its channel end, so the server fails too instead of
            // waiting.
            drop(ce);
            let server = server
                .join()
                .map_err(|_| PartyError::Sim("the server thread panicked".into()));
            (server, client)
        });
        let (output, client) = client?;
        runs.push(SimRun {
            output,
            server: server??,
            client,
        });
    }
    Ok(runs)
}
