//! The client (input owner): generates the HE keys, encrypts its shares for every linear layer
//! and reconstructs the output from the server's revealed share.

use std::sync::Arc;

use rand::{CryptoRng, RngCore};

use super::{
    LinearParty, ParamsCache, PartyError, Prepared, Report, exchange_checked, measured,
    read_shares, same_context, walk,
};
use crate::he::SecretKey;
use crate::linear::{Layout, LinearClient, Response};
use crate::nonlinear::Role;
use crate::ot::PadSupply;
use crate::plan::{HeParams, Layer, PublicPlan};
use crate::ring::Ring;
use crate::schedule::ContextKeys;
use crate::transport::Exchange;

/// Runs `plan` as the client on `input` (centred values of the plan's input tensor) over
/// `exchange`, taking the ROTs of the plan's OT batches from `ot` as the batches start (the
/// server asks its supply at the same points). Returns the centred output values and the
/// report.
///
/// # Errors
/// [`PartyError::InputLength`] for an input of the wrong size; otherwise on a channel failure
/// or a malformed peer message.
pub fn run_client<R: RngCore + CryptoRng>(
    plan: &PublicPlan,
    input: &[i64],
    prepared: &Prepared,
    exchange: &mut dyn Exchange,
    ot: &mut dyn PadSupply,
    rng: &mut R,
) -> Result<(Vec<i64>, Report), PartyError> {
    let role = Role::Client;
    let cost = &prepared.cost;
    let rings = &prepared.schedule.rings;
    let in_t = plan.input.tensor.0 as usize;
    let expected = plan.tensors.get(in_t).map_or(0, |t| t.len());
    if input.len() != expected {
        return Err(PartyError::InputLength {
            expected,
            actual: input.len(),
        });
    }
    let mut params = ParamsCache::default();
    let (keys, setup) = measured("setup", role, cost.setup, exchange, |ex| {
        send_keys(&prepared.schedule.keys, &mut params, ex, rng)
    })?;
    let mut client = Client { params, keys, rng };
    // The server's share of the model input is zero: the client's share is the input.
    let in_ring = Ring::new(rings[in_t]);
    let x: Vec<u64> = input.iter().map(|&v| in_ring.from_signed(v)).collect();
    let (mine, mut rows) = walk(&mut client, plan, prepared, x, exchange, ot)?;
    let ring = Ring::new(rings[plan.output.tensor.0 as usize]);
    let n = mine.len();
    let expected = (n as u64 * u64::from(ring.bits())).div_ceil(8) as usize;
    let (theirs, reveal) = measured("reveal", role, cost.reveal, exchange, |ex| {
        exchange_checked(ex, Vec::new(), expected, "output share")
    })?;
    let theirs = read_shares(theirs, n, ring.bits());
    let y = ring
        .add_vec(&mine, &theirs)
        .into_iter()
        .map(|v| ring.to_signed(v))
        .collect();
    rows.insert(0, setup);
    rows.push(reveal);
    Ok((y, Report { rows }))
}

/// Generates one key per context and sends its public key and Galois keys, in schedule order,
/// in one message.
fn send_keys<R: RngCore + CryptoRng>(
    contexts: &[ContextKeys],
    params: &mut ParamsCache,
    exchange: &mut dyn Exchange,
    rng: &mut R,
) -> Result<Vec<Arc<SecretKey>>, PartyError> {
    if contexts.is_empty() {
        return Ok(Vec::new());
    }
    let mut keys = Vec::with_capacity(contexts.len());
    let mut message = Vec::new();
    for context in contexts {
        let p = params.get(&context.he)?;
        let key = SecretKey::generate(&p, rng)?;
        message.extend(key.public_key(rng)?.to_bytes(&p));
        if !context.galois.is_empty() {
            message.extend(key.galois_keys(&context.galois, rng)?.to_bytes(&p));
        }
        keys.push(Arc::new(key));
    }
    exchange_checked(exchange, message, 0, "public key acknowledgement")?;
    Ok(keys)
}

struct Client<'a, R> {
    params: ParamsCache,
    /// Keys per parameter set (one secret per context, re-targeted per plaintext modulus).
    keys: Vec<Arc<SecretKey>>,
    rng: &'a mut R,
}

impl<R: RngCore + CryptoRng> Client<'_, R> {
    /// The key for `he`: the context's secret with `he`'s plaintext modulus.
    fn key(&mut self, he: &HeParams) -> Result<Option<Arc<SecretKey>>, PartyError> {
        if let Some(k) = self.keys.iter().find(|k| k.params().he() == he) {
            return Ok(Some(k.clone()));
        }
        let Some(base) = self
            .keys
            .iter()
            .find(|k| same_context(k.params().he(), he))
            .cloned()
        else {
            return Ok(None);
        };
        let p = self.params.get(he)?;
        let key = Arc::new(base.with_params(&p)?);
        self.keys.push(key.clone());
        Ok(Some(key))
    }
}

impl<R: RngCore + CryptoRng> LinearParty for Client<'_, R> {
    fn role(&self) -> Role {
        Role::Client
    }

    fn linear(
        &mut self,
        layer: &Layer,
        layout: Arc<Layout>,
        x: &[u64],
        _plain: bool,
        exchange: &mut dyn Exchange,
    ) -> Result<Vec<u64>, PartyError> {
        let id = layer.id;
        let linear = |source| PartyError::Linear { layer: id, source };
        let he = layout.protocol().he.clone();
        let key = self.key(&he)?.ok_or(PartyError::MissingKey(id))?;
        let params = key.params().clone();
        let client = LinearClient::new(layout.clone(), key).map_err(linear)?;
        let query = client.query(x, self.rng).map_err(linear)?;
        exchange_checked(
            exchange,
            query.to_bytes(&params),
            0,
            "query acknowledgement",
        )?;
        let response = exchange.exchange(Vec::new())?;
        let response = Response::from_bytes(&layout, &response).map_err(linear)?;
        client.finish(&response).map_err(linear)
    }
}
