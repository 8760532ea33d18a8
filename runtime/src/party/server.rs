//! The server (model owner): holds the weights, receives the client's public keys, answers
//! every linear layer's query and reveals its output share at the end.

use std::sync::Arc;

use rand::{CryptoRng, RngCore};

use super::{
    LinearParty, ParamsCache, PartyError, Prepared, Report, exchange_checked, measured, pack,
    same_context, walk,
};
use crate::cost::linear::public_key_bytes;
use crate::he::{PublicKey, SeededCt};
use crate::linear::{Layout, LinearServer, Query};
use crate::nonlinear::Role;
use crate::ot::PadSupply;
use crate::plan::{HeParams, Layer, Plan, ServerWeights};
use crate::transport::Exchange;

/// Runs `plan` (with its weights) as the server over `exchange`, taking the ROTs of the plan's
/// OT batches from `ot` as the batches start (the client asks its supply at the same points).
///
/// # Errors
/// [`PartyError`] on a channel failure, a malformed peer message or a plan without weights.
pub fn run_server<R: RngCore + CryptoRng>(
    plan: &Plan,
    prepared: &Prepared,
    exchange: &mut dyn Exchange,
    ot: &mut dyn PadSupply,
    rng: &mut R,
) -> Result<Report, PartyError> {
    let p = &plan.public;
    let role = Role::Server;
    let cost = &prepared.cost;
    let mut params = ParamsCache::default();
    let (keys, setup) = measured("setup", role, cost.setup, exchange, |ex| {
        receive_keys(&prepared.schedule.keys, &mut params, ex)
    })?;
    let mut server = Server {
        weights: plan.weights.as_ref(),
        params,
        keys,
        stat_bits: p.protocol.stat_bits,
        rng,
    };
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

/// Receives one public key per context, in schedule order, in one message.
fn receive_keys(
    contexts: &[HeParams],
    params: &mut ParamsCache,
    exchange: &mut dyn Exchange,
) -> Result<Vec<(HeParams, Arc<PublicKey>)>, PartyError> {
    if contexts.is_empty() {
        return Ok(Vec::new());
    }
    let lens = contexts
        .iter()
        .map(public_key_bytes)
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = exchange_checked(exchange, Vec::new(), lens.iter().sum(), "public keys")?;
    let mut rest = bytes.as_slice();
    let mut keys = Vec::with_capacity(contexts.len());
    for (he, len) in contexts.iter().zip(lens) {
        let (chunk, tail) = rest.split_at(len);
        rest = tail;
        let p = params.get(he)?;
        let pk = PublicKey::new(&p, &SeededCt::from_bytes(&p, chunk)?)?;
        keys.push((he.clone(), Arc::new(pk)));
    }
    Ok(keys)
}

struct Server<'a, R> {
    weights: Option<&'a ServerWeights>,
    params: ParamsCache,
    keys: Vec<(HeParams, Arc<PublicKey>)>,
    stat_bits: u32,
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
        let weights = self
            .weights
            .and_then(|w| w.get(id))
            .ok_or(PartyError::MissingWeights(id))?;
        let he = &layout.protocol().he;
        let params = self.params.get(he)?;
        let pk = self
            .keys
            .iter()
            .find(|(k, _)| same_context(k, he))
            .map(|(_, pk)| pk.clone())
            .ok_or(PartyError::MissingKey(id))?;
        let server = LinearServer::new(layout.clone(), params.clone(), pk, weights, self.stat_bits)
            .map_err(linear)?;
        let query = exchange.exchange(Vec::new())?;
        let query = Query::from_bytes(&params, &layout, &query).map_err(linear)?;
        let share = (!plain).then_some(x);
        let (response, y) = server.respond(&query, share, self.rng).map_err(linear)?;
        exchange_checked(
            exchange,
            response.to_bytes(&layout),
            0,
            "response acknowledgement",
        )?;
        Ok(y)
    }
}
