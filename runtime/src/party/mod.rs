//! The two parties' drivers: run a whole plan, layer by layer, as its [`Schedule`] says, over
//! one [`Exchange`] channel, and measure what each layer puts on the wire.
//!
//! ```text
//! let prepared = Prepared::new(&plan.public)?;            // both parties, no communication
//! // the server, once for all its sessions: flooding checks, bias words, kernels (budget)
//! let layers = ServerLayers::new(&plan.public, &prepared, &weights, DEFAULT_KERNEL_MEMORY)?;
//! let groups = prepared.ot_groups(Role::Server);           // the plan's OT batches
//! let report = with_prefetch(&mut source, bridge, groups, |ot| {
//!     run_server(&plan.public, &layers, &prepared, &mut exchange, ot, &mut rng) // ROTs batch by batch
//! })?;
//! // the client: run_client(&plan.public, &input, &prepared, &mut exchange, &mut ot, &mut rng)
//! ```
//!
//! The client generates the HE keys and sends one public key per HE context; each linear layer
//! is a query and a response (`protocols.md` §1.5); the nonlinear steps are the sessions of
//! [`crate::nonlinear`] on ROTs produced beforehand. Each nonlinear protocol runs in the chunks
//! of its [`Stage`] (at most the plan's [`crate::plan::GlobalProtocol::chunk_rots`] ROTs each); both parties ask
//! their [`PadSupply`] for each of the plan's OT batches ([`crate::cost::plan::OtBatch`]) when
//! the batch's first chunk starts, each into a buffer freed once its pads are taken
//! ([`crate::ot::OtPads`]), so memory holds one chunk's batches (and, with [`crate::ot::with_prefetch`], the next chunk's, produced while this
//! chunk runs), not a layer's or the whole inference's ROTs; the server reveals its output share to
//! the client at the end. The client learns only the output; the server
//! learns nothing. Every
//! peer message is length-checked before use: a malformed message is a [`PartyError`], never a
//! panic. The predicted traffic of every step comes from [`crate::cost::plan`], and
//! [`Report`] holds both the measured and the predicted numbers.

mod client;
pub mod net;
pub mod progress;
pub mod report;
mod server;
pub mod sim;

pub use client::run_client;
pub use server::{DEFAULT_KERNEL_MEMORY, KernelStats, ServerLayers, run_server};

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cost::plan::{OtBatch, PlanCost, Stage, Traffic, plan_cost};
use crate::he::{HeError, Params};
use crate::linear::{Layout, LinearError, NO_ELEMENT};
use crate::nonlinear::requant::{add, align, requant, unpack};
use crate::nonlinear::trunc::rescale;
use crate::nonlinear::{BitReader, BitWriter, ProtocolError, Role, Session, pool};
use crate::ot::{BatchGroups, OtPads, PadSupply};
use crate::params::he::{ConfigError, LinearOutput};
use crate::params::nonlinear::CombinePlan;
use crate::plan::{HeParams, Layer, LayerId, Op, OtBackend, PoolShape, PublicPlan, TensorId};
use crate::ring::Ring;
use crate::schedule::{Schedule, ScheduleError, StepKind, schedule};
use crate::transport::{Counters, Exchange, TransportError};

/// Why a two-party run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PartyError {
    /// The plan cannot be scheduled.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// An HE configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Key setup failed (including a malformed public key from the client).
    #[error("HE setup: {0}")]
    He(#[from] HeError),
    /// A linear layer failed (including malformed ciphertexts from the peer).
    #[error("layer {layer}: {source}")]
    Linear {
        /// The layer.
        layer: LayerId,
        /// Why.
        source: LinearError,
    },
    /// A nonlinear protocol failed (including malformed messages from the peer).
    #[error("layer {layer}: {source}")]
    Protocol {
        /// The layer.
        layer: LayerId,
        /// Why.
        source: ProtocolError,
    },
    /// The channel failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The OT extension failed.
    #[error(transparent)]
    Ot(#[from] crate::ot::OtError),
    /// The local connection or a party thread of a simulation failed.
    #[error("simulation: {0}")]
    Sim(String),
    /// The peer sent a message of the wrong size.
    #[error("{what}: peer message of {actual} bytes, expected {expected}")]
    MessageLength {
        /// Which message.
        what: &'static str,
        /// Expected bytes.
        expected: usize,
        /// Received bytes.
        actual: usize,
    },
    /// The server plan has no weights for a linear layer.
    #[error("layer {0}: the server plan has no weights for it")]
    MissingWeights(LayerId),
    /// The client's input has the wrong number of elements.
    #[error("input of {actual} elements, the plan expects {expected}")]
    InputLength {
        /// Elements of the plan's input.
        expected: usize,
        /// Elements given.
        actual: usize,
    },
    /// The schedule does not fit the layer (a schedule built for another plan).
    #[error("layer {0}: the schedule does not match the plan")]
    StepMismatch(LayerId),
    /// No HE key was set up for a linear layer's parameters (a schedule built for another
    /// plan).
    #[error("layer {0}: no HE key for its parameters")]
    MissingKey(LayerId),
    /// The plan reads a tensor no earlier layer computes (an invalid plan).
    #[error("layer {layer} reads tensor {tensor}, which is not computed before it")]
    MissingTensor {
        /// The layer.
        layer: LayerId,
        /// The tensor.
        tensor: TensorId,
    },
}

/// The schedule and predicted cost of a plan, which both parties derive before a run.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Per-layer protocols and share rings.
    pub schedule: Schedule,
    /// Predicted traffic.
    pub cost: PlanCost,
}

impl Prepared {
    /// Schedules `plan` and predicts its cost with the plan's OT backend.
    ///
    /// # Errors
    /// [`PartyError::Schedule`] or [`PartyError::Config`] if the plan cannot run.
    pub fn new(plan: &PublicPlan) -> Result<Self, PartyError> {
        Self::with_backend(plan, plan.protocol.ot)
    }

    /// As [`Prepared::new`] with another OT backend.
    ///
    /// # Errors
    /// As [`Prepared::new`].
    pub fn with_backend(plan: &PublicPlan, backend: OtBackend) -> Result<Self, PartyError> {
        let schedule = schedule(plan)?;
        let cost = plan_cost(plan, &schedule, backend)?;
        Ok(Prepared { schedule, cost })
    }

    /// The plan's OT batches as `role` produces them, grouped by the chunk that starts them
    /// (the order the drivers ask for them; [`crate::ot::with_prefetch`]).
    pub fn ot_groups(&self, role: Role) -> BatchGroups {
        let mut groups: BatchGroups = Vec::new();
        let mut first_chunk = None;
        for batch in &self.cost.ot_batches {
            let rots = batch_rots(batch, role);
            match groups.last_mut() {
                Some(group) if first_chunk == Some(batch.first_chunk) => group.push(rots),
                _ => groups.push(vec![rots]),
            }
            first_chunk = Some(batch.first_chunk);
        }
        groups
    }
}

/// The ROTs of `batch` for `role`: (as OT sender, as OT receiver).
fn batch_rots(batch: &OtBatch, role: Role) -> (usize, usize) {
    let (s, c) = (batch.server_rots as usize, batch.client_rots as usize);
    match role {
        Role::Server => (s, c),
        Role::Client => (c, s),
    }
}

/// Measured and predicted numbers of one part of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// `"setup"`, `"reveal"` or the layer's op kind.
    pub name: String,
    /// The layer, if the row is one.
    pub layer: Option<LayerId>,
    /// What went over the channel.
    pub measured: Traffic,
    /// What [`crate::cost::plan`] predicted.
    pub predicted: Traffic,
    /// Wall time of this party.
    pub time: Duration,
}

/// What one party measured during a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Setup, one row per layer, reveal.
    pub rows: Vec<Row>,
}

impl Report {
    /// Whether every row's measured traffic equals the prediction.
    pub fn matches_prediction(&self) -> bool {
        self.rows.iter().all(|r| r.measured == r.predicted)
    }

    /// Total measured traffic.
    pub fn measured(&self) -> Traffic {
        self.rows
            .iter()
            .fold(Traffic::default(), |t, r| t + r.measured)
    }

    /// Total wall time.
    pub fn time(&self) -> Duration {
        self.rows.iter().map(|r| r.time).sum()
    }

    /// A table: layer, op, bytes up/down measured and predicted, rounds, milliseconds.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<7} {:<8} {:>12} {:>12} {:>12} {:>12} {:>6} {:>9}\n",
            "layer", "op", "up", "up pred", "down", "down pred", "rounds", "ms"
        );
        for r in &self.rows {
            let layer = r.layer.map_or("-".to_string(), |l| l.to_string());
            s += &format!(
                "{:<7} {:<8} {:>12} {:>12} {:>12} {:>12} {:>6} {:>9.1}\n",
                layer,
                r.name,
                r.measured.bytes_up,
                r.predicted.bytes_up,
                r.measured.bytes_down,
                r.predicted.bytes_down,
                r.measured.rounds,
                r.time.as_secs_f64() * 1e3
            );
        }
        let m = self.measured();
        s += &format!(
            "{:<16} {:>12} {:>12} {:>12} {:>12} {:>6} {:>9.1}\n",
            "total",
            m.bytes_up,
            "",
            m.bytes_down,
            "",
            m.rounds,
            self.time().as_secs_f64() * 1e3
        );
        s
    }
}

/// What differs between the parties: the HE half of a linear layer and the setup/reveal
/// messages. Everything else (the nonlinear steps) is the same code for both.
trait LinearParty {
    /// This party's role.
    fn role(&self) -> Role;

    /// Runs the HE part of linear layer `layer` on this party's input share (`plain`: the
    /// input is the model input the client holds in the clear) and returns its share of the
    /// accumulator in `Z_{2^out_ring_bits}` (with packing: of the packed words, in
    /// [`Layout::word_fields`] order).
    fn linear(
        &mut self,
        layer: &Layer,
        layout: Arc<Layout>,
        x: &[u64],
        plain: bool,
        exchange: &mut dyn Exchange,
    ) -> Result<Vec<u64>, PartyError>;
}

/// The parameters of `he`, built once per distinct parameter set.
#[derive(Default)]
struct ParamsCache(Vec<Arc<Params>>);

impl ParamsCache {
    fn get(&mut self, he: &HeParams) -> Result<Arc<Params>, HeError> {
        if let Some(p) = self.0.iter().find(|p| p.he() == he) {
            return Ok(p.clone());
        }
        let p = Params::new(he)?;
        self.0.push(p.clone());
        Ok(p)
    }
}

/// Whether two parameter sets share `N` and the primes (one key serves both).
fn same_context(a: &HeParams, b: &HeParams) -> bool {
    a.degree == b.degree && a.moduli_bits == b.moduli_bits
}

/// The layout of a linear layer (accumulator output).
fn layout(layer: &Layer) -> Result<Layout, LinearError> {
    let out = LinearOutput::Accumulator;
    match &layer.op {
        Op::Conv(l) => Layout::conv(l, out),
        Op::MatMul(l) => Layout::matmul(l, out),
        Op::Affine(l) => Layout::affine(l, out),
        _ => Err(LinearError::Length {
            what: "linear layer",
            expected: 1,
            actual: 0,
        }),
    }
}

/// Sends `out` and receives the peer's message, which must have `expected` bytes.
fn exchange_checked(
    exchange: &mut dyn Exchange,
    out: Vec<u8>,
    expected: usize,
    what: &'static str,
) -> Result<Vec<u8>, PartyError> {
    let got = exchange.exchange(out)?;
    if got.len() != expected {
        return Err(PartyError::MessageLength {
            what,
            expected,
            actual: got.len(),
        });
    }
    Ok(got)
}

/// Bit-packs shares of `bits` bits.
fn pack(values: &[u64], bits: u32) -> Vec<u8> {
    let mut w = BitWriter::new();
    for &v in values {
        w.push(v, bits);
    }
    w.into_bytes()
}

/// Reads `n` shares of `bits` bits from a length-checked message.
fn read_shares(bytes: Vec<u8>, n: usize, bits: u32) -> Vec<u64> {
    let mut r = BitReader::from_bytes(bytes);
    (0..n).map(|_| r.read(bits)).collect()
}

/// The multiplier of every accumulator element of a linear layer with a requantization.
fn linear_multipliers(op: &Op, n: usize) -> Vec<i64> {
    let (multipliers, channel): (&[i64], Box<dyn Fn(usize) -> usize>) = match op {
        Op::Conv(l) => {
            let [oh, ow] = l.shape.out_hw();
            let per = (oh * ow).max(1);
            (mults(&l.requant), Box::new(move |i| i / per))
        }
        Op::MatMul(l) => {
            let cols = l.shape.cols.max(1);
            (mults(&l.requant), Box::new(move |i| i % cols))
        }
        Op::Affine(l) => {
            let per = l.shape.per_channel.max(1);
            (mults(&l.requant), Box::new(move |i| i / per))
        }
        _ => (&[], Box::new(|_| 0)),
    };
    (0..n)
        .map(|i| multipliers.get(channel(i)).copied().unwrap_or(0))
        .collect()
}

fn mults(r: &Option<crate::plan::Requant>) -> &[i64] {
    r.as_ref().map_or(&[], |r| r.multipliers.as_slice())
}

/// `y = requant(x·m[i])` of a [`CombinePlan`] with one input and per-element public
/// multipliers.
fn scale_requant(
    s: &mut Session<'_>,
    plan: &CombinePlan,
    x: &[u64],
    multipliers: &[i64],
) -> Result<Vec<u64>, ProtocolError> {
    let ring = Ring::new(plan.ring_bits);
    let xa = align(s, plan, 0, x)?;
    let z: Vec<u64> = xa
        .iter()
        .zip(multipliers)
        .map(|(&v, &m)| ring.mul(v, ring.from_signed(m)))
        .collect();
    requant(s, &plan.requant, &z)
}

/// The unpacked fields of a packed layer's words (word-major, [`Layout::word_fields`] order)
/// scattered to the layer's `n` output elements.
fn scatter(fields: &[u64], word_fields: &[u32], n: usize) -> Vec<u64> {
    let mut out = vec![0u64; n];
    for (&v, &e) in fields.iter().zip(word_fields) {
        if e != NO_ELEMENT
            && let Some(slot) = out.get_mut(e as usize)
        {
            *slot = v;
        }
    }
    out
}

/// Shares reduced into `Z_{2^bits}`.
fn reduce(x: &[u64], bits: u32) -> Vec<u64> {
    let ring = Ring::new(bits);
    x.iter().map(|&v| ring.reduce(v)).collect()
}

/// The ROTs of a run as they are consumed: each OT batch is produced when the batch's first
/// chunk starts and freed once its pads are taken, so a party holds one chunk's batches at a
/// time.
struct PadStream<'a> {
    pads: OtPads,
    batches: std::iter::Peekable<std::slice::Iter<'a, OtBatch>>,
    next_chunk: usize,
    role: Role,
    ot: &'a mut dyn PadSupply,
}

impl PadStream<'_> {
    /// Starts the next chunk: produces the batches beginning at it, if any, into the buffers.
    fn start_chunk(&mut self) -> Result<&mut OtPads, crate::ot::OtError> {
        while let Some(batch) = self.batches.next_if(|b| b.first_chunk == self.next_chunk) {
            let (send, receive) = batch_rots(batch, self.role);
            self.ot.batch(send, receive, &mut self.pads)?;
        }
        self.next_chunk += 1;
        Ok(&mut self.pads)
    }

    /// Runs the protocol `f` of `stage` chunk by chunk (`f` gets the chunk's units) and
    /// concatenates the chunks' outputs: elementwise protocols so compute what one run over all
    /// units would, with one chunk's ROTs at a time.
    fn run_stage(
        &mut self,
        stage: &Stage,
        exchange: &mut dyn Exchange,
        mut f: impl FnMut(&mut Session<'_>, Range<usize>) -> Result<Vec<u64>, ProtocolError>,
    ) -> Result<Vec<u64>, ProtocolError> {
        let mut out = Vec::new();
        for range in stage.ranges() {
            let role = self.role;
            let pads = self.start_chunk()?;
            let mut s = Session::new(role, pads, exchange);
            out.extend(f(&mut s, range)?);
        }
        Ok(out)
    }

    /// Checks that the run consumed every ROT of every batch.
    ///
    /// # Errors
    /// [`crate::ot::OtError::Unused`] with the ROTs left in the buffer and in batches never
    /// started (a bug in the cost accounting).
    fn finish(mut self) -> Result<(), crate::ot::OtError> {
        let (mut send, mut receive) = self.pads.remaining();
        for batch in self.batches.by_ref() {
            let (s, r) = batch_rots(batch, self.role);
            (send, receive) = (send + s, receive + r);
        }
        if (send, receive) == (0, 0) {
            Ok(())
        } else {
            Err(crate::ot::OtError::Unused { send, receive })
        }
    }
}

/// `x[range]`, or a length error if `x` is too short (a plan whose tensors do not match).
fn part<T>(x: &[T], range: Range<usize>) -> Result<&[T], ProtocolError> {
    let end = range.end;
    x.get(range).ok_or(ProtocolError::Length {
        expected: end,
        actual: x.len(),
    })
}

/// For every tensor, the index of the last layer reading it (`None`: never read).
fn last_reads(plan: &PublicPlan) -> Vec<Option<usize>> {
    let mut last = vec![None; plan.tensors.len()];
    for (i, layer) in plan.layers.iter().enumerate() {
        for t in &layer.inputs {
            if let Some(slot) = last.get_mut(t.0 as usize) {
                *slot = Some(i);
            }
        }
    }
    last
}

/// Walks the schedule: the shared body of [`run_server`] and [`run_client`]. `input` is this
/// party's share of the model input in its tensor's ring. Returns this party's share of the
/// output (in the output tensor's ring) and the per-layer rows. A tensor is dropped after the
/// last layer that reads it, and every nonlinear protocol runs in the chunks of its
/// [`Stage`], so memory holds the live tensors, one layer's HE state and one chunk's ROTs.
fn walk(
    party: &mut dyn LinearParty,
    plan: &PublicPlan,
    prepared: &Prepared,
    input: Vec<u64>,
    exchange: &mut dyn Exchange,
    ot: &mut dyn PadSupply,
) -> Result<(Vec<u64>, Vec<Row>), PartyError> {
    let sched = &prepared.schedule;
    let role = party.role();
    let mut tensors: Vec<Option<Vec<u64>>> = vec![None; plan.tensors.len()];
    tensors[plan.input.tensor.0 as usize] = Some(input);
    let last_read = last_reads(plan);
    let mut rows = Vec::with_capacity(sched.steps.len());
    let mut stream = PadStream {
        pads: OtPads::default(),
        batches: prepared.cost.ot_batches.iter().peekable(),
        next_chunk: 0,
        role,
        ot,
    };
    for (index, (step, cost)) in sched.steps.iter().zip(&prepared.cost.layers).enumerate() {
        let layer = &plan.layers[step.layer.0 as usize];
        let id = layer.id;
        let start = Instant::now();
        let before = exchange.counters();
        let inputs = layer
            .inputs
            .iter()
            .map(|&t| {
                tensors[t.0 as usize]
                    .as_deref()
                    .ok_or(PartyError::MissingTensor {
                        layer: id,
                        tensor: t,
                    })
            })
            .collect::<Result<Vec<&[u64]>, _>>()?;
        let out_bits = sched.rings[layer.output.0 as usize];
        let protocol = |source| PartyError::Protocol { layer: id, source };
        let mut stages = cost.stages.iter();
        let mut next_stage = || stages.next().ok_or(PartyError::StepMismatch(id));
        let y = match (&step.kind, &layer.op) {
            (
                StepKind::Linear {
                    plain_input,
                    unpack: up,
                    requant: rq,
                    ..
                },
                op,
            ) => {
                let layout = Arc::new(
                    layout(layer).map_err(|source| PartyError::Linear { layer: id, source })?,
                );
                let x = reduce(inputs[0], layout.protocol().in_ring_bits);
                let words = party.linear(layer, layout.clone(), &x, *plain_input, exchange)?;
                let acc = match up {
                    Some(u) => {
                        let fields = stream
                            .run_stage(next_stage()?, exchange, |s, r| {
                                unpack(s, u, part(&words, r)?)
                            })
                            .map_err(protocol)?;
                        scatter(&fields, layout.word_fields(), layout.output_len())
                    }
                    None => words,
                };
                match rq {
                    Some(p) => {
                        let m = linear_multipliers(op, acc.len());
                        stream
                            .run_stage(next_stage()?, exchange, |s, r| {
                                scale_requant(s, p, part(&acc, r.clone())?, part(&m, r)?)
                            })
                            .map_err(protocol)?
                    }
                    None => acc,
                }
            }
            (StepKind::Rescale(p), Op::Rescale(r)) => {
                let per = (inputs[0].len() / r.multipliers.len().max(1)).max(1);
                let m: Vec<i64> = (0..inputs[0].len())
                    .map(|i| r.multipliers.get(i / per).copied().unwrap_or(0))
                    .collect();
                stream
                    .run_stage(next_stage()?, exchange, |s, r| {
                        scale_requant(s, p, part(inputs[0], r.clone())?, part(&m, r)?)
                    })
                    .map_err(protocol)?
            }
            (StepKind::Add(p), Op::Add(a)) => stream
                .run_stage(next_stage()?, exchange, |s, r| {
                    let (x, y) = (part(inputs[0], r.clone())?, part(inputs[1], r)?);
                    add(s, p, x, y, (a.m_a, a.m_b))
                })
                .map_err(protocol)?,
            (StepKind::AvgPool(p), Op::AvgPool(spec)) => {
                let [h, w] = spec.pool.in_hw;
                stream
                    .run_stage(next_stage()?, exchange, |s, r| {
                        let mut chunk = spec.clone();
                        chunk.pool.channels = r.len();
                        let x = part(inputs[0], r.start * h * w..r.end * h * w)?;
                        pool::avg_pool(s, p, &chunk, x)
                    })
                    .map_err(protocol)?
            }
            (StepKind::MaxPool(p), Op::MaxPool(shape)) => {
                let [h, w] = shape.in_hw;
                stream
                    .run_stage(next_stage()?, exchange, |s, r| {
                        let chunk = PoolShape {
                            channels: r.len(),
                            ..shape.clone()
                        };
                        let x = part(inputs[0], r.start * h * w..r.end * h * w)?;
                        pool::max_pool(s, p, &chunk, x)
                    })
                    .map_err(protocol)?
            }
            (StepKind::Local, Op::Concat | Op::Reshape) => {
                let parts: Vec<Vec<u64>> = inputs.iter().map(|x| reduce(x, out_bits)).collect();
                parts.concat()
            }
            _ => return Err(PartyError::StepMismatch(id)),
        };
        let y = match &step.extend {
            Some(e) => stream
                .run_stage(next_stage()?, exchange, |s, r| rescale(s, e, part(&y, r)?))
                .map_err(protocol)?,
            None => y,
        };
        if stages.next().is_some() {
            return Err(PartyError::StepMismatch(id));
        }
        let y = reduce(&y, out_bits);
        for &t in &layer.inputs {
            if last_read[t.0 as usize] == Some(index) && t != plan.output.tensor {
                tensors[t.0 as usize] = None;
            }
        }
        tensors[layer.output.0 as usize] = Some(y);
        rows.push(Row {
            name: layer.op.kind().to_string(),
            layer: Some(id),
            measured: traffic(role, before, exchange.counters()),
            predicted: cost.traffic,
            time: start.elapsed(),
        });
    }
    stream.finish()?;
    let out = plan.output.tensor;
    let y = tensors[out.0 as usize]
        .take()
        .ok_or(PartyError::MissingTensor {
            layer: LayerId(plan.layers.len() as u32),
            tensor: out,
        })?;
    Ok((y, rows))
}

/// The traffic between two counter readings of `role`'s endpoint.
fn traffic(role: Role, before: Counters, after: Counters) -> Traffic {
    let sent = after.bytes_sent - before.bytes_sent;
    let received = after.bytes_received - before.bytes_received;
    let (bytes_up, bytes_down) = match role {
        Role::Client => (sent, received),
        Role::Server => (received, sent),
    };
    Traffic {
        bytes_up,
        bytes_down,
        rounds: after.frames_sent - before.frames_sent,
    }
}

/// Runs `f` and returns its result with a row named `name` measured around it.
fn measured<T>(
    name: &str,
    role: Role,
    predicted: Traffic,
    exchange: &mut dyn Exchange,
    f: impl FnOnce(&mut dyn Exchange) -> Result<T, PartyError>,
) -> Result<(T, Row), PartyError> {
    let start = Instant::now();
    let before = exchange.counters();
    let out = f(exchange)?;
    let row = Row {
        name: name.to_string(),
        layer: None,
        measured: traffic(role, before, exchange.counters()),
        predicted,
        time: start.elapsed(),
    };
    Ok((out, row))
}
