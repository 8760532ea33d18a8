//! The server (model owner): holds the weights, receives the client's keys, answers
//! every linear layer's query and reveals its output share at the end.
//!
//! What the server derives from its weights does not depend on the client: [`ServerLayers`]
//! builds it once, before the first session, and every session answers with it. That is, per
//! linear layer, the flooding check, the bias words and, within a memory budget, the kernel
//! polynomials in NTT form; a layer whose kernels do not fit builds them during each
//! inference instead, one filter group at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{CryptoRng, RngCore};

use super::{
    LinearParty, ParamsCache, PartyError, Prepared, Report, exchange_checked, measured, pack,
    same_context, walk,
};
use crate::cost::linear::{context_key_bytes, public_key_bytes};
use crate::he::{GaloisKeys, PublicKey, SeededCt, SeededGaloisKeys};
use crate::linear::{Layout, LinearServer, Query, ServerKeys};
use crate::nonlinear::Role;
use crate::ot::PadSupply;
use crate::params::he::ConfigError;
use crate::plan::{HeParams, Layer, LayerId, PublicPlan, ServerWeights};
use crate::schedule::{ContextKeys, StepKind};
use crate::transport::Exchange;

/// Memory for prepared kernels when the server is not told otherwise: 128 MiB. Prepared
/// kernels add their size to the server's peak resident memory; this keeps ResNet-50 W4A4
/// (latency-LAN plan) under 1.5 GB per party (`docs/transport.md`).
pub const DEFAULT_KERNEL_MEMORY: usize = 128 << 20;

/// The server's linear layers prepared from its weights, shared by all its sessions.
#[derive(Debug)]
pub struct ServerLayers {
    layers: Vec<(LayerId, LinearServer)>,
    stats: KernelStats,
}

/// What [`ServerLayers::new`] prepared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Linear layers.
    pub layers: usize,
    /// Layers whose kernels were prepared.
    pub prepared_layers: usize,
    /// Memory of the prepared kernels.
    pub prepared_bytes: usize,
    /// Memory all layers' kernels would take.
    pub total_bytes: usize,
    /// Time the preparation took.
    pub time: Duration,
}

impl ServerLayers {
    /// Prepares every linear layer of `plan` (scheduled as `prepared`) with its `weights`, in
    /// plan order: checks the flooding and computes the bias words, and builds the kernels of
    /// each layer whose kernels fit what is left of `kernel_memory` bytes (0: none, every
    /// inference builds them; `usize::MAX`: all).
    ///
    /// # Errors
    /// [`PartyError::MissingWeights`] for a linear layer without weights,
    /// [`PartyError::Linear`] for weights that do not fit the layer or that the flooding cannot
    /// hide, [`PartyError::He`] for invalid HE parameters.
    pub fn new(
        plan: &PublicPlan,
        prepared: &Prepared,
        weights: &ServerWeights,
        kernel_memory: usize,
    ) -> Result<Self, PartyError> {
        let start = Instant::now();
        let linear: Vec<&Layer> = prepared
            .schedule
            .steps
            .iter()
            .filter(|step| matches!(step.kind, StepKind::Linear { .. }))
            .map(|step| &plan.layers[step.layer.0 as usize])
            .collect();
        tracing::info!(
            layers = linear.len(),
            kernel_memory_mib = kernel_memory >> 20,
            "preparing the linear layers"
        );
        let mut params = ParamsCache::default();
        let mut left = kernel_memory;
        let mut stats = KernelStats {
            layers: linear.len(),
            ..KernelStats::default()
        };
        let mut layers = Vec::with_capacity(linear.len());
        for (index, layer) in linear.into_iter().enumerate() {
            let id = layer.id;
            let linear_error = |source| PartyError::Linear { layer: id, source };
            let w = weights.get(id).ok_or(PartyError::MissingWeights(id))?;
            let layout = super::layout(layer).map_err(linear_error)?;
            let p = params.get(&layout.protocol().he)?;
            let mut server =
                LinearServer::new(&layout, p, w, plan.protocol.stat_bits).map_err(linear_error)?;
            let bytes = server.kernel_bytes();
            stats.total_bytes += bytes;
            if bytes <= left {
                server.prepare_kernels(&layout).map_err(linear_error)?;
                left -= bytes;
                stats.prepared_layers += 1;
                stats.prepared_bytes += bytes;
            }
            tracing::debug!(
                layer = %id,
                kernel_bytes = bytes,
                prepared = server.kernels_prepared(),
                "linear layer {} of {} ready",
                index + 1,
                stats.layers
            );
            layers.push((id, server));
        }
        stats.time = start.elapsed();
        tracing::info!(
            layers = stats.layers,
            prepared_layers = stats.prepared_layers,
            prepared_mib = stats.prepared_bytes >> 20,
            total_mib = stats.total_bytes >> 20,
            secs = stats.time.as_secs_f64(),
            "linear layers prepared"
        );
        Ok(ServerLayers { layers, stats })
    }

    /// What was prepared.
    pub fn stats(&self) -> KernelStats {
        self.stats
    }

    /// The prepared server of layer `id`.
    pub fn get(&self, id: LayerId) -> Option<&LinearServer> {
        self.layers
            .iter()
            .find(|(l, _)| *l == id)
            .map(|(_, server)| server)
    }
}

/// Runs `plan` as the server over `exchange` with its prepared `layers`, taking the ROTs of
/// the plan's OT batches from `ot` as the batches start (the client asks its supply at the
/// same points).
///
/// # Errors
/// [`PartyError`] on a channel failure, a malformed peer message or layers prepared for
/// another plan.
pub fn run_server<R: RngCore + CryptoRng>(
    plan: &PublicPlan,
    layers: &ServerLayers,
    prepared: &Prepared,
    exchange: &mut dyn Exchange,
    ot: &mut dyn PadSupply,
    rng: &mut R,
) -> Result<Report, PartyError> {
    let p = plan;
    let role = Role::Server;
    let cost = &prepared.cost;
    let mut params = ParamsCache::default();
    let (keys, setup) = measured("setup", role, cost.setup, exchange, |ex| {
        receive_keys(&prepared.schedule.keys, &mut params, ex)
    })?;
    let mut server = Server { layers, keys, rng };
    let out = p.output.tensor.0 as usize;
    let input = vec![
        0;
        p.tensors
            .get(p.input.tensor.0 as usize)
            .map_or(0, |t| t.len())
    ];
    let (y, mut rows) = walk(&mut server, p, prepared, input, exchange, ot)?;
    let ring = prepared.schedule.rings[out];
    let ((), reveal) = measured("reveal", role, cost.reveal, exchange, |ex| {
        exchange_checked(ex, pack(&y, ring), 0, "reveal acknowledgement").map(drop)
    })?;
    rows.insert(0, setup);
    rows.push(reveal);
    Ok(Report { rows })
}

/// Receives each context's public key and Galois keys, in schedule order, in one message.
fn receive_keys(
    contexts: &[ContextKeys],
    params: &mut ParamsCache,
    exchange: &mut dyn Exchange,
) -> Result<Vec<(HeParams, Arc<ServerKeys>)>, PartyError> {
    if contexts.is_empty() {
        return Ok(Vec::new());
    }
    let lens = contexts
        .iter()
        .map(|c| {
            Ok((
                public_key_bytes(&c.he)?,
                context_key_bytes(&c.he, c.galois.len())?,
            ))
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let total = lens.iter().map(|&(_, all)| all).sum();
    let bytes = exchange_checked(exchange, Vec::new(), total, "client keys")?;
    let mut rest = bytes.as_slice();
    let mut keys = Vec::with_capacity(contexts.len());
    for (context, (public_len, len)) in contexts.iter().zip(lens) {
        let (chunk, tail) = rest.split_at(len);
        rest = tail;
        let (public, galois) = chunk.split_at(public_len);
        let p = params.get(&context.he)?;
        let public = PublicKey::new(&p, &SeededCt::from_bytes(&p, public)?)?;
        let galois = if context.galois.is_empty() {
            None
        } else {
            let seeded = SeededGaloisKeys::from_bytes(&p, &context.galois, galois)?;
            Some(GaloisKeys::new(&p, &seeded)?)
        };
        keys.push((context.he.clone(), Arc::new(ServerKeys { public, galois })));
    }
    Ok(keys)
}

struct Server<'a, R> {
    layers: &'a ServerLayers,
    keys: Vec<(HeParams, Arc<ServerKeys>)>,
    rng: &'a mut R,
}

impl<R: RngCore + CryptoRng> LinearParty for Server<'_, R> {
    fn role(&self) -> Role {
        Role::Server
    }

    fn linear(
        &mut self,
        layer: &Layer,
        layout: Arc<Layout>,
        x: &[u64],
        plain: bool,
        exchange: &mut dyn Exchange,
    ) -> Result<Vec<u64>, PartyError> {
        let id = layer.id;
        let linear = |source| PartyError::Linear { layer: id, source };
        let server = self.layers.get(id).ok_or(PartyError::MissingWeights(id))?;
        let params = server.params();
        let he = &layout.protocol().he;
        let keys = self
            .keys
            .iter()
            .find(|(k, _)| same_context(k, he))
            .map(|(_, keys)| keys.clone())
            .ok_or(PartyError::MissingKey(id))?;
        let query = exchange.exchange(Vec::new())?;
        let query = Query::from_bytes(params, &layout, &query).map_err(linear)?;
        let share = (!plain).then_some(x);
        let (response, y) = server
            .respond(&layout, &keys, &query, share, self.rng)
            .map_err(linear)?;
        exchange_checked(
            exchange,
            response.to_bytes(&layout),
            0,
            "response acknowledgement",
        )?;
        Ok(y)
    }
}
