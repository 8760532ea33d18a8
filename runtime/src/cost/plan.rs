//! Predicted communication of a whole plan, layer by layer, from its [`Schedule`]: the one
//! source of truth for `heqc explain` and for the runtime's measured-vs-predicted report.
//!
//! Message flow (what the party drivers put on the channel; every exchange is one round in
//! which both parties send one message, possibly empty):
//!
//! - setup: the client sends one public key per HE context ([`Schedule::keys`]), one round;
//! - a linear layer: the query (client → server), then the response (server → client), two
//!   rounds, then the requantization's rounds if any ([`crate::cost::linear`],
//!   [`crate::cost::nonlinear`]);
//! - `Rescale`, `Add`, `AvgPool`, `MaxPool`: their nonlinear protocol's rounds;
//! - reveal: the server sends its output share, `⌈n·r/8⌉` bytes for `n` outputs in a `r`-bit
//!   ring, one round.
//!
//! The random OTs are produced by the OT extension, which runs on its own connection, in
//! [`OtBatch`]es of at most the plan's
//! [`ot_batch_rots`](crate::plan::GlobalProtocol::ot_batch_rots) ROTs per direction. Every
//! nonlinear protocol of a layer is a [`Stage`] that runs over its units (packed words,
//! elements, or pool channels) in chunks of at most the plan's
//! [`chunk_rots`](crate::plan::GlobalProtocol::chunk_rots) ROTs per direction (at least one
//! batch; [`default_chunk_rots`]: 16 batches, at most 2^22 ROTs): the protocols are
//! elementwise, so the chunks compute what one run would, each chunk repeating the protocol's
//! rounds (and its messages' byte rounding). Consecutive chunks share a batch while it holds
//! their ROTs (so small layers share one), a larger chunk has batches of its own, and a batch
//! is produced when its first chunk starts. A party's ROTs in memory are so one chunk's
//! batches plus the next chunk's ([`pad_memory_bytes`]), whatever the size of a layer (only a
//! single element or pool channel may need more), at a price in rounds (`⌈ROTs / chunk⌉` runs
//! of a large layer's protocols) and in OT-extension bytes and round trips (silent OT's cost
//! per OT falls with the batch size): the chunk bound trades a party's memory for rounds. The
//! OT extension's traffic is [`PlanCost::ot_extension`], the sum of
//! [`crate::cost::ot_extension`]'s bytes over the batches.

use std::ops::Range;

use crate::cost::linear::{LinearCost, context_key_bytes};
use crate::cost::nonlinear::Cost;
use crate::cost::ot_extension::ot_extension_bytes;
use crate::params::he::ConfigError;
use crate::params::nonlinear::UnpackPlan;
use crate::plan::{LayerId, Op, OtBackend, PublicPlan, TensorId};
use crate::schedule::{Schedule, Step, StepKind};

/// Bytes each way and rounds of one part of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Traffic {
    /// Payload bytes client → server.
    pub bytes_up: u64,
    /// Payload bytes server → client.
    pub bytes_down: u64,
    /// Rounds (exchanges of one message each way).
    pub rounds: u64,
}

impl Traffic {
    /// Bytes in both directions.
    pub fn total_bytes(&self) -> u64 {
        self.bytes_up + self.bytes_down
    }

    /// The traffic of a nonlinear protocol run.
    pub fn of(cost: &Cost) -> Self {
        Traffic {
            bytes_up: cost.client_bytes,
            bytes_down: cost.server_bytes,
            rounds: cost.rounds,
        }
    }
}

impl std::ops::Add for Traffic {
    type Output = Traffic;
    fn add(self, o: Traffic) -> Traffic {
        Traffic {
            bytes_up: self.bytes_up + o.bytes_up,
            bytes_down: self.bytes_down + o.bytes_down,
            rounds: self.rounds + o.rounds,
        }
    }
}

/// One nonlinear protocol of a layer, run over its `units` (packed words, elements or pool
/// channels) in chunks of `chunk_units` consecutive units, each chunk needing at most the
/// plan's [`chunk_rots`](crate::plan::GlobalProtocol::chunk_rots) ROTs per direction (unless a
/// single unit needs more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage {
    /// Units the protocol runs over.
    pub units: u64,
    /// Units per chunk (the last chunk has the rest); at least 1.
    pub chunk_units: u64,
    /// Cost of one full chunk.
    pub chunk: Cost,
    /// Cost of the last chunk.
    pub last: Cost,
}

impl Stage {
    /// The stage of `units` units whose protocol costs `cost(k)` for `k` units, in chunks of at
    /// most `limit` ROTs per direction. ROTs grow linearly with the units (every protocol
    /// spends the same ROTs on each element), so the chunk is the largest number of units
    /// whose ROTs fit.
    pub fn new(units: u64, limit: u64, cost: impl Fn(u64) -> Cost) -> Stage {
        let whole = cost(units);
        let rots = whole.server_rots.max(whole.client_rots);
        let chunk_units = if rots <= limit {
            units.max(1)
        } else {
            let per_unit = whole
                .server_rots
                .div_ceil(units)
                .max(whole.client_rots.div_ceil(units));
            (limit / per_unit).max(1)
        };
        let chunks = units.div_ceil(chunk_units).max(1);
        Stage {
            units,
            chunk_units,
            chunk: cost(chunk_units.min(units)),
            last: cost(units - (chunks - 1) * chunk_units),
        }
    }

    /// Number of chunks (one for a stage without units).
    pub fn chunks(&self) -> u64 {
        self.units.div_ceil(self.chunk_units).max(1)
    }

    /// The units of each chunk, in run order.
    pub fn ranges(&self) -> impl Iterator<Item = Range<usize>> + use<> {
        let (units, chunk) = (self.units as usize, self.chunk_units as usize);
        (0..self.chunks() as usize).map(move |i| i * chunk..((i + 1) * chunk).min(units))
    }

    /// The cost of every chunk, in run order.
    pub fn chunk_costs(&self) -> impl Iterator<Item = Cost> + use<> {
        let full = self.chunks() - 1;
        let (chunk, last) = (self.chunk, self.last);
        (0..full).map(move |_| chunk).chain(std::iter::once(last))
    }

    /// The cost of all chunks.
    pub fn cost(&self) -> Cost {
        self.chunk_costs().fold(Cost::default(), |a, c| a + c)
    }
}

/// The cost of unpacking `words` packed words with `plan` in chunks of at most `chunk_rots`
/// ROTs per direction (the stage [`layer_cost`] runs).
pub fn unpack_cost(plan: &UnpackPlan, words: u64, chunk_rots: u64) -> Cost {
    Stage::new(words, chunk_rots, |k| plan.cost(k)).cost()
}

/// Predicted cost of one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerCost {
    /// The layer.
    pub layer: LayerId,
    /// Channel traffic of the layer (HE and nonlinear together).
    pub traffic: Traffic,
    /// The HE part of a linear layer.
    pub he: Option<LinearCost>,
    /// The nonlinear part (with its ROT counts): the sum of its stages.
    pub nonlinear: Cost,
    /// The nonlinear protocols in run order: the unpacking of the packed words, the
    /// requantization or the layer's own protocol, the extension of the output.
    pub stages: Vec<Stage>,
}

/// Predicted cost of one inference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanCost {
    /// Public keys (once per run).
    pub setup: Traffic,
    /// Per layer, in plan order.
    pub layers: Vec<LayerCost>,
    /// The server's output share to the client.
    pub reveal: Traffic,
    /// ROTs with the server as OT sender, for the whole inference.
    pub server_rots: u64,
    /// ROTs with the client as OT sender.
    pub client_rots: u64,
    /// The OT-extension batches producing those ROTs, in run order.
    pub ot_batches: Vec<OtBatch>,
    /// Traffic of the OT extension of one inference that is the first of its session (base OTs
    /// included), on its own connection; `rounds` counts its round trips (one per batch and
    /// direction), which the channel's rounds do not include.
    pub ot_extension: Traffic,
}

/// The OT batch sizes (most ROTs per direction in one batch) the compiler chooses from.
///
/// A silent-OT batch costs about 0.2 MB per direction whatever its size (0.58 bytes per ROT at
/// 2^18, 0.047 at 2^22, `cost::ot_extension`) and a few round trips, and its working memory
/// grows with its size (the encoder's buffer alone is 512 MB at 2^24). The encoder is
/// fastest where its buffers fit the caches (measured per size by `heq-run calibrate`,
/// [`crate::cost::compute::ComputeProfile::ot_ns_per_rot`]). 2^22 bounds the memory.
pub const OT_BATCH_CHOICES: [u64; 4] = [1 << 16, 1 << 18, 1 << 20, 1 << 22];

/// The OT batch size of plans that do not choose one (test plans, `--baseline cheetah`).
pub const DEFAULT_OT_BATCH_ROTS: u64 = 1 << 20;

/// The largest OT batch size a plan may ask for (its encoder's buffer alone is 512 MB).
pub const MAX_OT_BATCH_ROTS: u64 = 1 << 24;

/// One OT-extension batch: the ROTs of the consecutive chunks ([`Stage`]) from `first_chunk`
/// on, produced when that chunk starts (both parties ask at the same point of the run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OtBatch {
    /// Index of the first chunk (counting the chunks of every layer's stages in run order)
    /// whose ROTs the batch holds.
    pub first_chunk: usize,
    /// ROTs with the server as OT sender.
    pub server_rots: u64,
    /// ROTs with the client as OT sender.
    pub client_rots: u64,
}

/// Groups the chunks' ROTs (server, client) into batches of at most `limit` ROTs per
/// direction: consecutive chunks while they fit, and a chunk above `limit` in
/// `⌈rots/limit⌉` batches of its own starting at that chunk (the last one open to the next
/// chunks). Chunks without ROTs start no batch.
pub fn ot_batches(chunks: &[(u64, u64)], limit: u64) -> Vec<OtBatch> {
    let limit = limit.max(1);
    let mut batches: Vec<OtBatch> = Vec::new();
    let mut open: Option<OtBatch> = None;
    for (i, &(s, c)) in chunks.iter().enumerate() {
        if s == 0 && c == 0 {
            continue;
        }
        if let Some(b) = &mut open
            && b.server_rots + s <= limit
            && b.client_rots + c <= limit
        {
            b.server_rots += s;
            b.client_rots += c;
            continue;
        }
        batches.extend(open.take());
        let (mut s, mut c) = (s, c);
        while s > limit || c > limit {
            batches.push(OtBatch {
                first_chunk: i,
                server_rots: s.min(limit),
                client_rots: c.min(limit),
            });
            s -= s.min(limit);
            c -= c.min(limit);
        }
        open = Some(OtBatch {
            first_chunk: i,
            server_rots: s,
            client_rots: c,
        });
    }
    batches.extend(open);
    batches
}

/// Most OT batches one chunk of a nonlinear protocol spans by default ([`default_chunk_rots`]).
pub const CHUNK_BATCHES: u64 = 16;

/// Most ROTs per direction of one chunk spanning several OT batches by default
/// ([`default_chunk_rots`]).
pub const DEFAULT_MAX_CHUNK_ROTS: u64 = 1 << 22;

/// The largest chunk bound a plan may ask for, as large as the largest OT batch
/// ([`MAX_OT_BATCH_ROTS`]): its pads alone take up to [`pad_memory_bytes`]`(2^24)` = 1.64 GB
/// per party.
pub const MAX_CHUNK_ROTS: u64 = 1 << 24;

/// The chunk bound of plans that do not choose a larger one (test plans, `--baseline
/// cheetah`, the communication objective and fast networks) with OT batches of `batch_rots`:
/// [`CHUNK_BATCHES`] batches but at most [`DEFAULT_MAX_CHUNK_ROTS`], and at least one batch.
/// The chunk bounds a party's pads in memory (its batches are held until it has consumed
/// them); spanning several small batches keeps the OT encoder at the speed of small batches
/// while a large layer runs in few chunks, and so few rounds.
pub fn default_chunk_rots(batch_rots: u64) -> u64 {
    batch_rots
        .saturating_mul(CHUNK_BATCHES)
        .min(DEFAULT_MAX_CHUNK_ROTS)
        .max(batch_rots)
}

/// Bytes of one ROT's pads in a party that is its OT sender (two 128-bit pads).
pub const SENDER_PAD_BYTES: u64 = 32;

/// Bytes of one ROT's pads in a party that is its OT receiver (a 128-bit pad and a choice).
pub const RECEIVER_PAD_BYTES: u64 = 17;

/// The most bytes of ROT pads a party holds with chunks of at most `chunk_rots` ROTs per
/// direction: the current chunk's and the next one's (produced ahead,
/// [`crate::ot::with_prefetch`]), each up to `chunk_rots` ROTs as sender and as receiver
/// (only a single unit larger than the chunk may need more). The OT extension's working
/// memory, the tensors and the pads a protocol copies out of a batch not yet consumed (held
/// twice until it is, at most one batch per direction: [`crate::ot::OtPads::take_send`])
/// come on top.
pub fn pad_memory_bytes(chunk_rots: u64) -> u64 {
    chunk_rots.saturating_mul(2 * (SENDER_PAD_BYTES + RECEIVER_PAD_BYTES))
}

/// Traffic of the OT extension producing `batches` with `backend`; `first` if they are the
/// session's first (base OTs on each direction's first non-empty batch).
pub fn ot_extension_traffic(backend: OtBackend, batches: &[OtBatch], first: bool) -> Traffic {
    let (mut s2c_used, mut c2s_used) = (!first, !first);
    let mut t = Traffic::default();
    for b in batches {
        // (OT sender's bytes, receiver's bytes) per direction.
        let s2c = ot_extension_bytes(backend, b.server_rots, !s2c_used);
        let c2s = ot_extension_bytes(backend, b.client_rots, !c2s_used);
        s2c_used |= b.server_rots > 0;
        c2s_used |= b.client_rots > 0;
        t = t + Traffic {
            bytes_up: s2c.1 + c2s.0,
            bytes_down: s2c.0 + c2s.1,
            rounds: u64::from(b.server_rots > 0) + u64::from(b.client_rots > 0),
        };
    }
    t
}

impl PlanCost {
    /// Channel traffic of the whole run: setup, layers and reveal (OT extension excluded).
    pub fn channel(&self) -> Traffic {
        self.layers
            .iter()
            .fold(self.setup + self.reveal, |t, l| t + l.traffic)
    }

    /// The most bytes of ROT pads each party holds at once, as (server, client): the batches
    /// one chunk starts, and the next such group, produced ahead ([`crate::ot::with_prefetch`]);
    /// a party holds [`SENDER_PAD_BYTES`] per ROT it sends and [`RECEIVER_PAD_BYTES`] per ROT
    /// it receives (pads copied out of a batch not yet consumed aside, see
    /// [`pad_memory_bytes`]). At most [`pad_memory_bytes`] of the plan's chunk bound where
    /// every unit fits a chunk.
    pub fn pad_bytes(&self) -> (u64, u64) {
        let mut groups: Vec<(usize, u64, u64)> = Vec::new();
        for b in &self.ot_batches {
            let server = b.server_rots * SENDER_PAD_BYTES + b.client_rots * RECEIVER_PAD_BYTES;
            let client = b.client_rots * SENDER_PAD_BYTES + b.server_rots * RECEIVER_PAD_BYTES;
            match groups.last_mut() {
                Some(g) if g.0 == b.first_chunk => (g.1, g.2) = (g.1 + server, g.2 + client),
                _ => groups.push((b.first_chunk, server, client)),
            }
        }
        let held = |i: usize| {
            let next = groups.get(i + 1).map_or((0, 0), |g| (g.1, g.2));
            (groups[i].1 + next.0, groups[i].2 + next.1)
        };
        (0..groups.len())
            .map(held)
            .fold((0, 0), |(s, c), (hs, hc)| (s.max(hs), c.max(hc)))
    }
}

/// Rounds of the HE part of a linear layer: the query, then the response.
pub const LINEAR_ROUNDS: u64 = 2;

/// The predicted cost of one scheduled step of `plan`: its HE messages, then its nonlinear
/// protocols (the unpacking of the packed words, the requantization or the layer's own
/// protocol, the extension of the output), each a [`Stage`] in chunks of the plan's
/// [`chunk_rots`](crate::plan::GlobalProtocol::chunk_rots).
pub fn layer_cost(plan: &PublicPlan, step: &Step) -> LayerCost {
    let layer = &plan.layers[step.layer.0 as usize];
    let limit = plan.protocol.chunk_rots;
    let len = |t: TensorId| plan.tensors[t.0 as usize].len() as u64;
    let n_out = len(layer.output);
    let mut stages = Vec::new();
    let he = match (&step.kind, &layer.op) {
        (
            StepKind::Linear {
                geometry,
                budget,
                unpack,
                requant,
                ..
            },
            _,
        ) => {
            let he = geometry.cost(budget);
            let words = he.coeffs_down as u64;
            stages.extend(unpack.map(|u| Stage::new(words, limit, |k| u.cost(k))));
            stages.extend(
                requant
                    .as_ref()
                    .map(|p| Stage::new(n_out, limit, |k| p.cost(&[k], k))),
            );
            Some(he)
        }
        (StepKind::Rescale(p) | StepKind::Add(p), _) => {
            let inputs = layer.inputs.len();
            stages.push(Stage::new(n_out, limit, |k| p.cost(&vec![k; inputs], k)));
            None
        }
        (StepKind::AvgPool(p), Op::AvgPool(spec)) => {
            let (c, [h, w], [oh, ow]) = (spec.pool.channels, spec.pool.in_hw, spec.pool.out_hw());
            let (per_in, per_out) = ((h * w) as u64, (oh * ow) as u64);
            stages.push(Stage::new(c as u64, limit, |k| {
                p.cost(&[k * per_in], k * per_out)
            }));
            None
        }
        (StepKind::MaxPool(p), Op::MaxPool(shape)) => {
            let [oh, ow] = shape.out_hw();
            let (c, per_out) = (shape.channels as u64, (oh * ow) as u64);
            stages.push(Stage::new(c, limit, |k| {
                p.for_channels(k, c).cost(k * per_out)
            }));
            None
        }
        _ => None,
    };
    stages.extend(step.extend.map(|e| Stage::new(n_out, limit, |k| e.cost(k))));
    let nonlinear = stages
        .iter()
        .fold(Cost::default(), |a, stage| a + stage.cost());
    let he_traffic = he.map_or(Traffic::default(), |h| Traffic {
        bytes_up: h.bytes_up as u64,
        bytes_down: h.bytes_down as u64,
        rounds: LINEAR_ROUNDS,
    });
    LayerCost {
        layer: step.layer,
        traffic: he_traffic + Traffic::of(&nonlinear),
        he,
        nonlinear,
        stages,
    }
}

/// The predicted cost of running `plan` as scheduled by `schedule` with the OT `backend`.
///
/// # Errors
/// [`ConfigError`] if an HE context has invalid parameters (a scheduled plan has none).
pub fn plan_cost(
    plan: &PublicPlan,
    schedule: &Schedule,
    backend: OtBackend,
) -> Result<PlanCost, ConfigError> {
    let mut setup = Traffic::default();
    for k in &schedule.keys {
        setup.bytes_up += context_key_bytes(&k.he, k.galois.len())? as u64;
    }
    if !schedule.keys.is_empty() {
        setup.rounds = 1;
    }
    let layers: Vec<LayerCost> = schedule
        .steps
        .iter()
        .map(|step| layer_cost(plan, step))
        .collect();
    let out = plan.output.tensor.0 as usize;
    let n = plan.tensors.get(out).map_or(0, |t| t.len() as u64);
    let ring = u64::from(schedule.rings.get(out).copied().unwrap_or(0));
    let reveal = Traffic {
        bytes_up: 0,
        bytes_down: (n * ring).div_ceil(8),
        rounds: 1,
    };
    let server_rots = layers.iter().map(|l| l.nonlinear.server_rots).sum();
    let client_rots = layers.iter().map(|l| l.nonlinear.client_rots).sum();
    let rots: Vec<(u64, u64)> = layers
        .iter()
        .flat_map(|l| &l.stages)
        .flat_map(Stage::chunk_costs)
        .map(|c| (c.server_rots, c.client_rots))
        .collect();
    let ot_batches = ot_batches(&rots, plan.protocol.ot_batch_rots);
    let ot_extension = ot_extension_traffic(backend, &ot_batches, true);
    Ok(PlanCost {
        setup,
        layers,
        reveal,
        server_rots,
        client_rots,
        ot_batches,
        ot_extension,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::linear::matmul_cost;
    use crate::params::he::LinearOutput;
    use crate::plan::{MatMulShape, Op, Requant, Rounding};
    use crate::reference::testutil::{PlanBuilder, linear, weights};
    use crate::schedule::schedule;

    #[test]
    fn plan_cost_adds_keys_layers_and_reveal() {
        let shape = MatMulShape {
            rows: 1,
            inner: 4,
            cols: 2,
        };
        let mut l = linear(shape.clone(), 8, None);
        l.protocol.tile.c = 4;
        l.protocol.tile.m = 2;
        let he = matmul_cost(&shape, 8, &l.protocol, LinearOutput::Accumulator).unwrap();
        let proto = l.protocol.clone();
        let mut b = PlanBuilder::new(&[1, 4], (-8, 8));
        let t1 = b.linear(
            Op::MatMul(l),
            b.input(),
            weights(&[1; 8], &[0, 0]),
            &[1, 2],
            (-127, 127),
        );
        let rescale = Op::Rescale(Requant {
            multipliers: vec![1],
            shift: 2,
            clamp: (-16, 15),
            rounding: Rounding::NoTies,
        });
        let t2 = b.layer(rescale, &[t1], &[1, 2], (-16, 15));
        let plan = b.build(t2).unwrap();
        let s = schedule(&plan.public).unwrap();
        let c = plan_cost(&plan.public, &s, OtBackend::Silent).unwrap();
        let key = crate::cost::linear::public_key_bytes(&proto.he).unwrap() as u64;
        assert_eq!(
            c.setup,
            Traffic {
                bytes_up: key,
                bytes_down: 0,
                rounds: 1
            }
        );
        assert_eq!(
            c.layers[0].traffic,
            Traffic {
                bytes_up: he.bytes_up as u64,
                bytes_down: he.bytes_down as u64,
                rounds: LINEAR_ROUNDS
            }
        );
        let rescale = layer_cost(&plan.public, &s.steps[1]).nonlinear;
        assert_eq!(c.layers[1].traffic, Traffic::of(&rescale));
        assert_eq!(
            (c.server_rots, c.client_rots),
            (rescale.server_rots, rescale.client_rots)
        );
        // Two outputs in a 5-bit ring: 10 bits.
        assert_eq!(
            c.reveal,
            Traffic {
                bytes_up: 0,
                bytes_down: 2,
                rounds: 1
            }
        );
        assert_eq!(
            c.channel().total_bytes(),
            key + he.total_bytes() as u64 + rescale.total_bytes() + 2
        );
    }

    #[test]
    fn ot_batches_group_chunks_and_split_large_ones() {
        let b = |first_chunk, server_rots, client_rots| OtBatch {
            first_chunk,
            server_rots,
            client_rots,
        };
        // Chunks 0+1 share a batch, chunk 2 (no ROTs) starts none, chunk 3 overflows into a
        // new batch that chunk 4 joins, chunk 5 needs 2.5 batches, the last part shared with 6.
        let chunks = [
            (40, 10),
            (60, 0),
            (0, 0),
            (50, 90),
            (20, 5),
            (250, 30),
            (10, 0),
        ];
        assert_eq!(
            ot_batches(&chunks, 100),
            vec![
                b(0, 100, 10),
                b(3, 70, 95),
                b(5, 100, 30),
                b(5, 100, 0),
                b(5, 60, 0)
            ]
        );
        assert_eq!(ot_batches(&chunks, u64::MAX), vec![b(0, 430, 135)]);
        assert!(ot_batches(&[(0, 0)], 100).is_empty());
    }

    #[test]
    fn default_chunks_span_up_to_16_batches_and_2_pow_22_rots() {
        assert_eq!(default_chunk_rots(4), 64);
        assert_eq!(default_chunk_rots(1 << 18), 1 << 22);
        assert_eq!(default_chunk_rots(1 << 20), 1 << 22);
        assert_eq!(default_chunk_rots(1 << 22), 1 << 22);
        assert_eq!(default_chunk_rots(1 << 24), 1 << 24);
        assert_eq!(default_chunk_rots(u64::MAX), u64::MAX);
    }

    #[test]
    fn pad_memory_is_two_chunks_of_sender_and_receiver_pads() {
        assert_eq!(pad_memory_bytes(1), 98);
        assert_eq!(pad_memory_bytes(1 << 22), 411_041_792);
        assert_eq!(pad_memory_bytes(MAX_CHUNK_ROTS), 1_644_167_168);
        assert_eq!(pad_memory_bytes(u64::MAX), u64::MAX);
    }

    /// A stage runs in the most units whose ROTs fit the limit; its cost is the chunks' costs,
    /// each with its own rounds and byte rounding.
    #[test]
    fn stages_chunk_to_the_batch_limit() {
        // 3 server ROTs and 2 client ROTs per unit; one 5-bit message per unit each way.
        let cost = |k: u64| Cost {
            server_bytes: (5 * k).div_ceil(8),
            client_bytes: (5 * k).div_ceil(8),
            rounds: 2,
            server_rots: 3 * k,
            client_rots: 2 * k,
        };
        let whole = Stage::new(10, 30, cost);
        assert_eq!((whole.chunk_units, whole.chunks()), (10, 1));
        assert_eq!(whole.cost(), cost(10));
        assert_eq!(whole.ranges().collect::<Vec<_>>(), vec![0..10]);
        // 14 ROTs per batch: 4 units (12 ROTs) per chunk, 4 + 4 + 2.
        let s = Stage::new(10, 14, cost);
        assert_eq!((s.chunk_units, s.chunks()), (4, 3));
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![0..4, 4..8, 8..10]);
        assert_eq!(
            s.chunk_costs().collect::<Vec<_>>(),
            vec![cost(4), cost(4), cost(2)]
        );
        assert_eq!(
            s.cost(),
            Cost {
                server_bytes: 3 + 3 + 2,
                client_bytes: 3 + 3 + 2,
                rounds: 6,
                server_rots: 30,
                client_rots: 20
            }
        );
        // A unit above the limit: one unit per chunk.
        let single = Stage::new(3, 2, cost);
        assert_eq!(
            (single.chunk_units, single.chunks(), single.last),
            (1, 3, cost(1))
        );
        // No units: one empty chunk, the protocol's cost at zero.
        let empty = Stage::new(0, 14, cost);
        assert_eq!((empty.chunks(), empty.cost()), (1, cost(0)));
        assert_eq!(empty.ranges().collect::<Vec<_>>(), vec![0..0]);
    }

    /// Each party holds the batches one chunk starts and the next chunk's: 32 bytes per ROT
    /// it sends, 17 per ROT it receives.
    #[test]
    fn pads_in_memory_are_two_consecutive_chunks_batches() {
        let b = |first_chunk, server_rots, client_rots| OtBatch {
            first_chunk,
            server_rots,
            client_rots,
        };
        let mut cost = PlanCost {
            setup: Traffic::default(),
            layers: Vec::new(),
            reveal: Traffic::default(),
            server_rots: 0,
            client_rots: 0,
            ot_batches: Vec::new(),
            ot_extension: Traffic::default(),
        };
        assert_eq!(cost.pad_bytes(), (0, 0));
        cost.ot_batches = vec![b(0, 10, 0)];
        assert_eq!(cost.pad_bytes(), (320, 170));
        // Groups: chunk 0 (10, 2), chunk 3 (100 + 100, 0 + 50), chunk 4 (1, 1).
        cost.ot_batches = vec![b(0, 10, 2), b(3, 100, 0), b(3, 100, 50), b(4, 1, 1)];
        let server = |s: u64, c: u64| 32 * s + 17 * c;
        let client = |s: u64, c: u64| 17 * s + 32 * c;
        assert_eq!(
            cost.pad_bytes(),
            (
                server(10, 2) + server(200, 50),
                client(10, 2) + client(200, 50)
            )
        );
        assert_eq!(cost.pad_bytes(), (7604, 5234));
        // A large last group: the last two groups hold the most.
        cost.ot_batches.push(b(4, 0, 300));
        assert_eq!(
            cost.pad_bytes(),
            (
                server(200, 50) + server(1, 301),
                client(200, 50) + client(1, 301)
            )
        );
    }

    #[test]
    fn ot_extension_traffic_pays_base_ots_once_per_direction() {
        let batches = [
            OtBatch {
                first_chunk: 0,
                server_rots: 5000,
                client_rots: 0,
            },
            OtBatch {
                first_chunk: 1,
                server_rots: 7000,
                client_rots: 3000,
            },
        ];
        let silent = OtBackend::Silent;
        let t = ot_extension_traffic(silent, &batches, true);
        let (s1, s2) = (
            ot_extension_bytes(silent, 5000, true),
            ot_extension_bytes(silent, 7000, false),
        );
        let c = ot_extension_bytes(silent, 3000, true);
        assert_eq!(t.bytes_down, s1.0 + s2.0 + c.1);
        assert_eq!(t.bytes_up, s1.1 + s2.1 + c.0);
        assert_eq!(t.rounds, 3);
        let later = ot_extension_traffic(silent, &batches, false);
        let c = ot_extension_bytes(silent, 3000, false);
        assert_eq!(
            later.bytes_down,
            ot_extension_bytes(silent, 5000, false).0 + s2.0 + c.1
        );
        assert!(later.total_bytes() < t.total_bytes());
    }

    #[test]
    fn packed_layers_unpack_into_the_requantization_ring_and_are_priced() {
        use crate::plan::{PackDim, Packing};
        use crate::reference::testutil::requant;
        let mut l = linear(
            MatMulShape {
                rows: 1,
                inner: 4,
                cols: 2,
            },
            8,
            Some(requant(&[16, 8], 4, (0, 15))),
        );
        l.protocol.tile.c = 4;
        l.protocol.tile.m = 1;
        l.protocol.packing = Packing {
            factor: 2,
            field_bits: 9,
            dim: PackDim::OutChannels,
        };
        l.protocol.he.plain_bits = 18;
        (l.protocol.in_ring_bits, l.protocol.out_ring_bits) = (18, 18);
        let mut b = PlanBuilder::new(&[1, 4], (-8, 8));
        let t1 = b.linear(
            Op::MatMul(l),
            b.input(),
            weights(&[1; 8], &[0, 0]),
            &[1, 2],
            (0, 15),
        );
        let plan = b.build(t1).unwrap();
        let s = schedule(&plan.public).unwrap();
        let StepKind::Linear {
            unpack: Some(u),
            requant: Some(r),
            ..
        } = &s.steps[0].kind
        else {
            panic!("packed linear step");
        };
        // Two filters in the two fields of one word, unpacked straight into the
        // requantization's combination ring, which it then reads without extension.
        assert_eq!((u.fields, u.field_bits, u.out_bits), (2, 9, r.ring_bits));
        assert_eq!(r.inputs[0].2, None);
        // One packed word revealed, unpacked into the two accumulators.
        let c = layer_cost(&plan.public, &s.steps[0]);
        assert_eq!(c.he.map(|he| he.coeffs_down), Some(1));
        assert_eq!(c.nonlinear, u.cost(1) + r.cost(&[2], 2));
    }
}
