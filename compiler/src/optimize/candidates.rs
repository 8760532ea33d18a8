//! Per-layer configurations of a linear layer: HE parameter sets from a fixed menu, at given
//! share rings and packing ([`RingOption`]), and tiles `(C_w, H_w, W_w, M_w)` with
//! `M_w·C_w·H_w·W_w ≤ N` (`protocols.md` §1.4, §3.6), in Cheetah's encoding and in the
//! channel-interleaved one whose responses the server packs (BumbleBee, [`Encoding`]). Every
//! candidate is priced by the runtime's own cost functions ([`heq_runtime::cost::linear`]) and
//! must pass the server's flooding check (`LinearServer::new`); only the Pareto-optimal ones on
//! (bytes, compute time) are kept, per HE context and set of Galois keys, so that the ILP stays
//! small.
//!
//! An interleaved tile has one filter per ciphertext and a power-of-two channel tile `C_w`; its
//! responses are packed `members` to a ciphertext: the largest power of two up to `C_w` and the
//! filter groups (rounded up to a power of two) whose key-switching noise the primes accept,
//! and also two (a single Galois key, which layers of the same `C_w` share) when that is fewer.
//!
//! A layer's share ring and HEQuant packing ([`RingOption`]) are chosen outside this module (they
//! change the nonlinear steps around the layer too); for a packed option the field width is the
//! accumulator plus a guard bit, which the runtime's unpacking needs, and packing along output
//! channels scales the kernel by `2^(j·s)` per field, which the flooding check accounts for.

use crate::error::{Error, Result};
use heq_runtime::cost::compute::{ComputeProfile, HeOps};
use heq_runtime::cost::linear::{LinearCost, context_key_bytes, public_key_bytes};
use heq_runtime::params::conv::{ConvGeometry, affine_as_conv, matmul_as_conv};
use heq_runtime::params::he::{
    ConfigError, ERROR_BOUND, HeBudget, LinearOutput, SHARE_NOISE_BOUND, galois_key_bytes,
    layer_budget, pack_exponents, pack_fits,
};
use heq_runtime::plan::{
    ConvShape, Encoding, HeParams, LayerId, LayerWeights, LinearProtocol, Op, PackDim, Packing,
    Plan, Tile,
};
use heq_runtime::schedule;

/// The menu of ciphertext prime sizes per ring degree (the kept prime first). Every list is
/// within the 128-bit bound of its degree (54, 109 and 218 bits); the noise budget and the
/// flooding check decide which ones a layer can use. At `N = 2048` no list leaves the 40 bits of
/// flooding slack a plan asks for, so those contexts are always rejected.
pub fn moduli_menu(degree: usize) -> Vec<Vec<u32>> {
    match degree {
        2048 => vec![vec![54], vec![34, 20]],
        4096 => {
            let mut v = Vec::new();
            for b0 in [36, 40, 44, 48, 54, 60] {
                for b1 in [20, 24, 30, 36, 49] {
                    v.push(vec![b0, b1]);
                }
            }
            v
        }
        8192 => {
            let mut v = vec![vec![60, 60, 60], vec![60, 49, 49]];
            for b0 in [40, 48, 56, 60] {
                for b1 in [20, 30, 40, 60] {
                    v.push(vec![b0, b1]);
                }
            }
            v
        }
        _ => Vec::new(),
    }
}

/// An HE context: what one client public key serves.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HeContext {
    /// Ring degree `N`.
    pub degree: usize,
    /// Prime sizes.
    pub moduli_bits: Vec<u32>,
}

/// What the client's keys of one HE context cost: its public key, and each Galois key of the
/// response packing of its layers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContextKeys {
    /// The context.
    pub context: HeContext,
    /// Bytes of the public key.
    pub public_key: u64,
    /// Bytes of one Galois key.
    pub galois_key: u64,
}

impl ContextKeys {
    /// The key prices of the context of `he`.
    ///
    /// # Errors
    /// As [`public_key_bytes`].
    pub fn of(he: &HeParams) -> std::result::Result<Self, ConfigError> {
        let b0 = he.moduli_bits.first().copied().unwrap_or(0);
        Ok(ContextKeys {
            context: HeContext {
                degree: he.degree,
                moduli_bits: he.moduli_bits.clone(),
            },
            public_key: public_key_bytes(he)? as u64,
            galois_key: galois_key_bytes(he.degree, b0) as u64,
        })
    }
}

/// Bytes of the keys the client sends for the `chosen` candidates: per HE context they use, the
/// public key and one Galois key per distinct exponent of their response packing
/// ([`schedule::context_keys`], as `plan_cost` counts them).
pub fn key_bytes<'a>(chosen: impl IntoIterator<Item = &'a Candidate>) -> u64 {
    schedule::context_keys(chosen.into_iter().map(|c| &c.protocol))
        .iter()
        .filter_map(|k| context_key_bytes(&k.he, k.galois.len()).ok())
        .map(|bytes| bytes as u64)
        .sum()
}

/// One configuration of one linear layer, priced.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The protocol.
    pub protocol: LinearProtocol,
    /// Exact HE communication (from the runtime's cost functions).
    pub cost: LinearCost,
    /// Ciphertext × plaintext products the server computes.
    pub products: usize,
    /// Compute time estimate in milliseconds (the search's [`ComputeProfile`]): the HE
    /// operations, and the ROTs of the unpacking once the optimizer has priced it (as
    /// `unpack_bytes`).
    pub compute_ms: f64,
    /// Channel bytes of the unpacking of its packed words (0 without packing): the number of
    /// words depends on the tile, the unpacking's ring on the plan around the layer, so the
    /// optimizer sets it (`cost::plan::unpack_cost` of `cost.coeffs_down` words).
    pub unpack_bytes: u64,
    /// Channel rounds of the unpacking: its protocol's rounds once per chunk of one OT batch
    /// of ROTs, so more words may take more rounds (0 without packing; set with
    /// `unpack_bytes`).
    pub unpack_rounds: u64,
}

impl Candidate {
    /// Channel bytes that depend on this candidate: HE messages and unpacking.
    pub fn bytes(&self) -> u64 {
        self.cost.total_bytes() as u64 + self.unpack_bytes
    }

    /// Objective value of what depends on this candidate: its bytes, the rounds of its
    /// unpacking and its compute.
    pub fn value(&self, objective: super::Objective) -> f64 {
        objective.value(self.bytes(), self.unpack_rounds, self.compute_ms)
    }

    /// The HE context of the candidate.
    pub fn context(&self) -> HeContext {
        HeContext {
            degree: self.protocol.he.degree,
            moduli_bits: self.protocol.he.moduli_bits.clone(),
        }
    }

    /// The Galois exponents its response packing needs keys for, increasing (empty without
    /// packing).
    pub fn galois_exponents(&self) -> Vec<usize> {
        let p = &self.protocol;
        pack_exponents(p.he.degree, p.tile.c, p.encoding.members())
    }
}

/// The candidates of one linear layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerCandidates {
    /// The layer.
    pub layer: LayerId,
    /// Pareto-optimal candidates per HE context and set of Galois exponents, sorted by
    /// context, then by bytes within each set of exponents.
    pub candidates: Vec<Candidate>,
}

/// The runner-up of a linear layer: the cheapest configuration (HE bytes) at the layer's rings
/// other than its own; what `heqc explain` shows next to the chosen one.
#[derive(Clone, Debug, PartialEq)]
pub struct RunnerUp {
    /// The layer.
    pub layer: LayerId,
    /// Its runner-up configuration, priced.
    pub candidate: Candidate,
}

/// The candidate of `layer` with the fewest HE bytes other than `own` (the first on ties).
pub fn runner_up(own: &LinearProtocol, layer: &LayerCandidates) -> Option<RunnerUp> {
    layer
        .candidates
        .iter()
        .filter(|k| k.protocol != *own)
        .min_by_key(|k| k.cost.total_bytes())
        .map(|k| RunnerUp {
            layer: layer.layer,
            candidate: k.clone(),
        })
}

/// The runner-up of every linear layer of a server plan, searched at the layer's own rings
/// and packing (candidates timed with `profile`). Empty for client plans and plans the search
/// rejects.
pub fn runner_ups(plan: &Plan, profile: &ComputeProfile) -> Vec<RunnerUp> {
    let own: Vec<&LinearProtocol> = plan
        .public
        .layers
        .iter()
        .filter_map(|l| heq_runtime::schedule::linear_protocol(&l.op).map(|(p, _)| p))
        .collect();
    let options: Vec<RingOption> = own.iter().map(|p| RingOption::of(p)).collect();
    let Ok(found) = search(plan, &options, profile) else {
        return Vec::new();
    };
    own.iter()
        .zip(&found)
        .filter_map(|(p, c)| runner_up(p, c))
        .collect()
}

/// What the search needs of a linear layer.
struct LinearView<'a> {
    conv: ConvShape,
    acc_bits: u32,
    protocol: &'a LinearProtocol,
    /// `‖w_m‖₁` per output channel (filter).
    filter_l1: Vec<u64>,
}

fn view<'a>(op: &'a Op, w: &LayerWeights) -> Option<LinearView<'a>> {
    let l1 = |v: &[i32]| v.iter().map(|x| u64::from(x.unsigned_abs())).sum::<u64>();
    Some(match op {
        Op::Conv(l) => {
            let per = l.shape.weight_len() / l.shape.out_channels.max(1);
            LinearView {
                conv: l.shape.clone(),
                acc_bits: l.acc_bits,
                protocol: &l.protocol,
                filter_l1: w.weights.chunks(per.max(1)).map(l1).collect(),
            }
        }
        Op::MatMul(l) => {
            let cols = l.shape.cols.max(1);
            let mut f = vec![0u64; cols];
            for (i, x) in w.weights.iter().enumerate() {
                f[i % cols] += u64::from(x.unsigned_abs());
            }
            LinearView {
                conv: matmul_as_conv(&l.shape),
                acc_bits: l.acc_bits,
                protocol: &l.protocol,
                filter_l1: f,
            }
        }
        Op::Affine(l) => LinearView {
            conv: affine_as_conv(&l.shape),
            acc_bits: l.acc_bits,
            protocol: &l.protocol,
            filter_l1: w
                .weights
                .iter()
                .map(|x| u64::from(x.unsigned_abs()))
                .collect(),
        },
        _ => return None,
    })
}

/// Bits of an upper bound on the noise the server's flood must hide for this geometry
/// (`product_noise` in `runtime/src/linear/protocol.rs`; a filter in field `j` of a slot counts `2^(j·s)` times): `(B_e + 2)·max_g Σ_{m∈g} ‖w_m‖₁ + 1` plus
/// the re-randomisation noise `2·B_e·N + B_e`. The server sums the centred kernel coefficients
/// reduced mod `t`, which is never larger, so a layer passing this bound passes the server's
/// check.
fn noise_bits(g: &ConvGeometry, filter_l1: &[u64], degree: usize) -> u32 {
    let max_l1 = (0..g.n_mg)
        .map(|mg| {
            g.filters(mg)
                .map(|(_, field, m)| {
                    let l1 = filter_l1.get(m).copied().unwrap_or(0);
                    let shift = field as u32 * g.field_bits;
                    if l1 == 0 {
                        0
                    } else if l1.leading_zeros() <= shift {
                        u64::MAX
                    } else {
                        l1 << shift
                    }
                })
                .fold(0u64, u64::saturating_add)
        })
        .max()
        .unwrap_or(0);
    let rerandomise = 2 * ERROR_BOUND * degree as u64 + ERROR_BOUND;
    let noise = SHARE_NOISE_BOUND
        .saturating_mul(max_l1)
        .saturating_add(1 + rerandomise);
    64 - noise.saturating_sub(1).leading_zeros()
}

/// `proto` for the linear layer `op` with `weights` if the server's flooding check passes with
/// its tile; otherwise the same HE parameters and rings on the tile with the fewest bytes that
/// passes: among the tiles with few ciphertexts ([`geometries`]), else among all tiles (a layer
/// whose filters are too heavy for those needs fewer filters per ciphertext); `None` if none
/// does, or `op` is not linear.
pub fn runnable_tile(
    op: &Op,
    weights: &LayerWeights,
    proto: &LinearProtocol,
    stat_bits: u32,
) -> Option<LinearProtocol> {
    let v = view(op, weights)?;
    let budget = layer_budget(proto, v.acc_bits, LinearOutput::Accumulator).ok()?;
    let passes = |g: &ConvGeometry| {
        budget.flood_slack(noise_bits(g, &v.filter_l1, proto.he.degree)) >= i64::from(stat_bits)
    };
    if ConvGeometry::new(&v.conv, proto).is_ok_and(|g| passes(&g)) {
        return Some(proto.clone());
    }
    let cheapest = |gs: Vec<ConvGeometry>| {
        gs.into_iter()
            .filter(passes)
            .min_by_key(|g| g.cost(&budget).total_bytes())
    };
    let best = cheapest(geometries(&v.conv, proto))
        .or_else(|| cheapest(all_geometries(&v.conv, proto)))?;
    Some(LinearProtocol {
        tile: best.tile,
        ..proto.clone()
    })
}

/// Tile lengths along one axis: the effective tile that splits the outputs into `n` equal
/// parts, for a few `n`.
fn axis_tiles(len: usize, pads: (usize, usize), kernel: usize, stride: usize) -> Vec<usize> {
    let padded = len + pads.0 + pads.1;
    if kernel == 0 || stride == 0 || padded < kernel {
        return Vec::new();
    }
    let out = (padded - kernel) / stride + 1;
    let (k, s) = if kernel == 1 && stride > 1 {
        (1, 1)
    } else {
        (kernel, stride)
    };
    let mut v: Vec<usize> = [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 24, 32, 64, out]
        .iter()
        .filter(|&&n| n <= out)
        .map(|&n| (out.div_ceil(n) - 1) * s + k)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Splits of `total` into tiles of at most `max`, `max/2`, `max/4`, …: for each cap the largest
/// tile and the balanced one (smaller channel tiles leave room for more filters per
/// ciphertext, which fully connected layers need).
fn splits(total: usize, max: usize) -> Vec<usize> {
    let mut v = Vec::new();
    let mut cap = max.min(total);
    while cap > 0 {
        v.push(cap);
        v.push(total.div_ceil(total.div_ceil(cap)));
        cap /= 2;
    }
    v.sort_unstable_by(|a, b| b.cmp(a));
    v.dedup();
    v
}

/// Candidate tiles of a convolution for ring degree `n`.
fn tiles(s: &ConvShape, n: usize) -> Vec<Tile> {
    let rows = axis_tiles(s.in_hw[0], (s.pads[0], s.pads[2]), s.kernel[0], s.stride[0]);
    let cols = axis_tiles(s.in_hw[1], (s.pads[1], s.pads[3]), s.kernel[1], s.stride[1]);
    let mut out = Vec::new();
    for &h in &rows {
        for &w in &cols {
            if h * w > n {
                continue;
            }
            for c in splits(s.in_channels, n / (h * w)) {
                for m in splits(s.out_channels, n / (c * h * w)) {
                    out.push(Tile { c, h, w, m });
                }
            }
        }
    }
    out.sort_unstable_by_key(|t| (t.c, t.h, t.w, t.m));
    out.dedup();
    out
}

/// Candidate tiles of the interleaved encoding for ring degree `n`: one filter per ciphertext
/// and, for each `H_w × W_w` of [`tiles`], the three largest power-of-two channel tiles that
/// fit, up to the channels rounded up to a power of two.
fn interleaved_tiles(s: &ConvShape, n: usize) -> Vec<Tile> {
    let rows = axis_tiles(s.in_hw[0], (s.pads[0], s.pads[2]), s.kernel[0], s.stride[0]);
    let cols = axis_tiles(s.in_hw[1], (s.pads[1], s.pads[3]), s.kernel[1], s.stride[1]);
    let most = s.in_channels.max(1).next_power_of_two();
    let mut out = Vec::new();
    for &h in &rows {
        for &w in &cols {
            let Some(room) = n.checked_div(h * w).filter(|&r| r > 0) else {
                continue;
            };
            let cap = (1usize << room.ilog2()).min(most);
            for c in [cap, cap / 2, cap / 4] {
                if c > 0 {
                    out.push(Tile { c, h, w, m: 1 });
                }
            }
        }
    }
    out.sort_unstable_by_key(|t| (t.c, t.h, t.w));
    out.dedup();
    out
}

/// Responses one interleaved ciphertext can pack for `g` at most: its channel tile, and its
/// filter groups rounded up to a power of two.
fn most_members(g: &ConvGeometry) -> usize {
    g.tile.c.min(g.n_mg.max(1).next_power_of_two())
}

/// The geometries of the candidate tiles for `proto`'s degree and encoding that need at most
/// twice the fewest ciphertexts (request plus response) of any tile: a tile with more
/// ciphertexts pays a full `c1` per response and a full request each, which the saved useful
/// coefficients never repay at these sizes; the cut keeps the search fast on large images.
/// Interleaved geometries pack [`most_members`] responses, at most `proto`'s members.
fn geometries(s: &ConvShape, proto: &LinearProtocol) -> Vec<ConvGeometry> {
    let all = all_geometries(s, proto);
    let cts = |g: &ConvGeometry| g.input_cts() + g.response_cts();
    let fewest = all.iter().map(cts).min().unwrap_or(0);
    all.into_iter().filter(|g| cts(g) <= 2 * fewest).collect()
}

/// The geometries of every tile of `s` with `proto`'s parameters (interleaved ones with
/// [`most_members`] responses per ciphertext, at most `proto`'s members).
fn all_geometries(s: &ConvShape, proto: &LinearProtocol) -> Vec<ConvGeometry> {
    let mut p = proto.clone();
    match proto.encoding {
        Encoding::Cheetah => tiles(s, proto.he.degree)
            .into_iter()
            .filter_map(|t| {
                p.tile = t;
                ConvGeometry::new(s, &p).ok()
            })
            .collect(),
        Encoding::Interleaved { members } => interleaved_tiles(s, proto.he.degree)
            .into_iter()
            .filter_map(|t| {
                p.tile = t;
                p.encoding = Encoding::Interleaved { members: 1 };
                let unpacked = ConvGeometry::new(s, &p).ok()?;
                p.encoding = Encoding::Interleaved {
                    members: most_members(&unpacked).min(members),
                };
                ConvGeometry::new(s, &p).ok()
            })
            .collect(),
    }
}

/// The largest number of responses (a power of two up to `N`) whose packing noise fits
/// `budget` (1: none).
fn fitting_members(budget: &HeBudget) -> usize {
    let mut members = 1;
    while members < budget.degree && pack_fits(budget, members * 2) {
        members *= 2;
    }
    members
}

/// The geometries a candidate geometry `g` runs as with primes that pack up to `fitting`
/// responses: itself in Cheetah's encoding; an interleaved one packing as many responses as
/// fit, and two when that is more (one Galois key); none when no two responses fit.
fn packings(
    s: &ConvShape,
    proto: &LinearProtocol,
    g: &ConvGeometry,
    fitting: usize,
) -> Vec<ConvGeometry> {
    if proto.encoding == Encoding::Cheetah {
        return vec![g.clone()];
    }
    let most = g.members().min(fitting);
    let mut out = Vec::new();
    for members in [most, 2] {
        if members < 2
            || members > most
            || out.iter().any(|o: &ConvGeometry| o.members() == members)
        {
            continue;
        }
        let p = LinearProtocol {
            tile: g.tile,
            encoding: Encoding::Interleaved { members },
            ..proto.clone()
        };
        out.extend(ConvGeometry::new(s, &p));
    }
    out
}

/// Keeps the candidates not dominated on (bytes, compute time) by one of the same Galois
/// exponents (which pays the same keys); sorted by exponents, then bytes.
fn pareto_per_keys(v: Vec<Candidate>) -> Vec<Candidate> {
    let mut groups: std::collections::BTreeMap<Vec<usize>, Vec<Candidate>> = Default::default();
    for c in v {
        groups.entry(c.galois_exponents()).or_default().push(c);
    }
    groups.into_values().flat_map(pareto).collect()
}

/// Keeps the candidates not dominated on (bytes, compute time); sorted by bytes.
fn pareto(mut v: Vec<Candidate>) -> Vec<Candidate> {
    v.sort_by(|a, b| {
        a.cost
            .total_bytes()
            .cmp(&b.cost.total_bytes())
            .then(a.compute_ms.total_cmp(&b.compute_ms))
    });
    let mut best = f64::INFINITY;
    v.retain(|c| {
        let keep = c.compute_ms < best;
        best = best.min(c.compute_ms);
        keep
    });
    v
}

/// The share rings and packing of one linear layer: input ring = plaintext = output ring =
/// `ring` bits; with packing, `ring ≥ factor·field_bits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingOption {
    /// Ring bits.
    pub ring: u32,
    /// HEQuant packing ([`Packing::none`] for none).
    pub packing: Packing,
}

impl RingOption {
    /// `ring` bits, no packing.
    pub fn plain(ring: u32) -> Self {
        RingOption {
            ring,
            packing: Packing::none(),
        }
    }

    /// `factor` fields of `acc_bits + 1` bits (a guard bit for the unpacking) along `dim`, in
    /// a ring of exactly `factor` fields.
    pub fn packed(acc_bits: u32, factor: u32, dim: PackDim) -> Self {
        let field_bits = acc_bits + 1;
        RingOption {
            ring: factor * field_bits,
            packing: Packing {
                factor,
                field_bits,
                dim,
            },
        }
    }

    /// The option a protocol runs with (its plaintext width and packing).
    pub fn of(p: &LinearProtocol) -> Self {
        RingOption {
            ring: p.he.plain_bits,
            packing: p.packing,
        }
    }

    /// `p` with this option's rings, plaintext and packing.
    pub fn apply(&self, p: &LinearProtocol) -> LinearProtocol {
        LinearProtocol {
            he: HeParams {
                plain_bits: self.ring,
                ..p.he.clone()
            },
            packing: self.packing,
            encoding: Encoding::Cheetah,
            in_ring_bits: self.ring,
            out_ring_bits: self.ring,
            ..p.clone()
        }
    }
}

/// The linear layers of a server plan as the search sees them (shape, accumulator, filter
/// norms), in plan order.
pub struct LinearLayers<'a> {
    views: Vec<(LayerId, LinearView<'a>)>,
    stat_bits: u32,
    profile: &'a ComputeProfile,
    /// Whether the interleaved encoding (response packing) is among the candidates.
    response_packing: bool,
}

impl<'a> LinearLayers<'a> {
    /// The linear layers of `plan`, their candidates timed with `profile`.
    ///
    /// # Errors
    /// [`Error::Optimize`] when the plan has no weights.
    pub fn new(plan: &'a Plan, profile: &'a ComputeProfile) -> Result<Self> {
        let weights = plan.weights.as_ref().ok_or(Error::Optimize {
            reason: "the optimizer needs the server plan (weights)".into(),
        })?;
        let views = plan
            .public
            .layers
            .iter()
            .filter(|l| l.op.is_linear())
            .map(|layer| {
                let no_weights = || Error::Optimize {
                    reason: format!("layer {}: no weights", layer.id),
                };
                let w = weights.get(layer.id).ok_or_else(no_weights)?;
                let v = view(&layer.op, w).ok_or_else(no_weights)?;
                Ok((layer.id, v))
            })
            .collect::<Result<_>>()?;
        Ok(LinearLayers {
            views,
            stat_bits: plan.public.protocol.stat_bits,
            profile,
            response_packing: true,
        })
    }

    /// The same layers with Cheetah's encoding only (no response packing).
    pub fn without_response_packing(self) -> Self {
        LinearLayers {
            response_packing: false,
            ..self
        }
    }

    /// Number of linear layers.
    pub fn len(&self) -> usize {
        self.views.len()
    }

    /// Whether the plan has no linear layer.
    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }

    /// The id of the `i`-th linear layer.
    pub fn id(&self, i: usize) -> LayerId {
        self.views[i].0
    }

    /// Accumulator bits of the `i`-th linear layer.
    pub fn acc_bits(&self, i: usize) -> u32 {
        self.views[i].1.acc_bits
    }

    /// The candidates of the `i`-th linear layer at `option`; `None` when no configuration
    /// runs.
    pub fn candidates(&self, i: usize, option: RingOption) -> Option<LayerCandidates> {
        let (layer, v) = &self.views[i];
        let candidates = layer_candidates(
            v,
            option,
            self.stat_bits,
            self.profile,
            self.response_packing,
        );
        (!candidates.is_empty()).then_some(LayerCandidates {
            layer: *layer,
            candidates,
        })
    }
}

/// The candidates of every linear layer of `plan` at `options[i]` for the `i`-th linear layer,
/// timed with `profile`.
///
/// # Errors
/// [`Error::Optimize`] when the plan has no weights or a layer has no valid configuration.
pub fn search(
    plan: &Plan,
    options: &[RingOption],
    profile: &ComputeProfile,
) -> Result<Vec<LayerCandidates>> {
    let layers = LinearLayers::new(plan, profile)?;
    options
        .iter()
        .enumerate()
        .take(layers.len())
        .map(|(i, &o)| {
            layers.candidates(i, o).ok_or_else(|| Error::Optimize {
                reason: format!(
                    "layer {}: no HE configuration for a {}-bit accumulator",
                    layers.id(i),
                    layers.acc_bits(i)
                ),
            })
        })
        .collect()
}

fn layer_candidates(
    v: &LinearView<'_>,
    option: RingOption,
    stat_bits: u32,
    profile: &ComputeProfile,
    response_packing: bool,
) -> Vec<Candidate> {
    let mut all = Vec::new();
    for degree in heq_runtime::params::he::DEGREES {
        let menu = moduli_menu(degree);
        let Some(first) = menu.first() else {
            continue;
        };
        let base = LinearProtocol {
            he: HeParams {
                degree,
                moduli_bits: first.clone(),
                plain_bits: option.ring,
            },
            tile: v.protocol.tile,
            packing: option.packing,
            encoding: Encoding::Cheetah,
            in_ring_bits: option.ring,
            out_ring_bits: option.ring,
        };
        // The tilings and their noise depend on N only, not on the primes (nor on the number of
        // packed responses).
        let encodings = [Encoding::Cheetah, Encoding::Interleaved { members: degree }];
        let encodings = &encodings[..if response_packing { 2 } else { 1 }];
        let geoms: Vec<(LinearProtocol, ConvGeometry, u32)> = encodings
            .iter()
            .copied()
            .flat_map(|encoding| {
                let proto = LinearProtocol {
                    encoding,
                    ..base.clone()
                };
                geometries(&v.conv, &proto).into_iter().map(move |g| {
                    let noise = noise_bits(&g, &v.filter_l1, degree);
                    (proto.clone(), g, noise)
                })
            })
            .collect();
        for moduli_bits in menu {
            let mut proto = LinearProtocol {
                he: HeParams {
                    moduli_bits,
                    ..base.he.clone()
                },
                ..base.clone()
            };
            let Ok(budget) = layer_budget(&proto, v.acc_bits, LinearOutput::Accumulator) else {
                continue;
            };
            if public_key_bytes(&proto.he).is_err() {
                continue;
            }
            let fitting = fitting_members(&budget);
            let mut per_context = Vec::new();
            for (encoded, g, noise) in &geoms {
                if budget.flood_slack(*noise) < i64::from(stat_bits) {
                    continue;
                }
                for g in packings(&v.conv, encoded, g, fitting) {
                    proto.tile = g.tile;
                    proto.encoding = g.encoding;
                    let cost = g.cost(&budget);
                    let products = g.n_c * g.n_sg * g.n_mg;
                    let compute_ms = profile.he_ms(&proto.he, HeOps::new(&cost, products));
                    per_context.push(Candidate {
                        protocol: proto.clone(),
                        cost,
                        products,
                        compute_ms,
                        unpack_bytes: 0,
                        unpack_rounds: 0,
                    });
                }
            }
            all.extend(pareto_per_keys(per_context));
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tiles_split_the_outputs() {
        // 8 rows + 2 padding, 3×3 kernel, stride 1: 8 outputs; n = 1, 2, 3, 4, 5, 6, 7, 8
        // give 8, 4, 3, 2, 2, 2, 2, 1 outputs per tile, i.e. tiles of 10, 6, 5, 4, 3.
        assert_eq!(axis_tiles(8, (1, 1), 3, 1), vec![3, 4, 5, 6, 10]);
        // 1×1 stride 2 over 8: sub-sampled to 4 effective positions.
        assert_eq!(axis_tiles(8, (0, 0), 1, 2), vec![1, 2, 4]);
    }

    #[test]
    fn splits_are_largest_and_balanced_per_cap() {
        // Caps 4, 2, 1: tiles 4 (balanced 4), 2 (2), 1 (1).
        assert_eq!(splits(10, 4), vec![4, 2, 1]);
        // Caps 6, 3, 1: 6 and balanced 5, 3 and balanced 3 (4 tiles of ≤ 3 → 3), 1.
        assert_eq!(splits(10, 6), vec![6, 5, 3, 1]);
        // Caps 3, 1.
        assert_eq!(splits(3, 12), vec![3, 1]);
        assert_eq!(splits(5, 0), Vec::<usize>::new());
    }

    /// A 3×3 convolution of `c` channels over `hw × hw` (padding 1) into `m` filters.
    fn conv(c: usize, hw: usize, m: usize) -> ConvShape {
        ConvShape {
            in_channels: c,
            in_hw: [hw, hw],
            out_channels: m,
            kernel: [3, 3],
            stride: [1, 1],
            pads: [1, 1, 1, 1],
            groups: 1,
        }
    }

    fn protocol(moduli_bits: Vec<u32>, plain_bits: u32, encoding: Encoding) -> LinearProtocol {
        LinearProtocol {
            he: HeParams {
                degree: 4096,
                moduli_bits,
                plain_bits,
            },
            tile: Tile {
                c: 1,
                h: 1,
                w: 1,
                m: 1,
            },
            packing: Packing::none(),
            encoding,
            in_ring_bits: plain_bits,
            out_ring_bits: plain_bits,
        }
    }

    #[test]
    fn interleaved_tiles_have_one_filter_and_power_of_two_channels() {
        for (c, hw) in [(3, 8), (16, 32), (64, 8), (512, 7)] {
            let s = conv(c, hw, 8);
            let tiles = interleaved_tiles(&s, 4096);
            assert!(!tiles.is_empty());
            for t in &tiles {
                assert_eq!(t.m, 1, "{t:?}");
                assert!(
                    t.c.is_power_of_two() && t.c <= c.next_power_of_two(),
                    "{t:?}"
                );
                assert!(t.c * t.h * t.w <= 4096, "{t:?}");
            }
        }
        // 3 channels over 8×8 (10×10 padded): the whole image in one tile, channels padded to
        // 4, and the two halvings.
        let tiles = interleaved_tiles(&conv(3, 8, 8), 4096);
        for c in [4, 2, 1] {
            assert!(
                tiles.contains(&Tile {
                    c,
                    h: 10,
                    w: 10,
                    m: 1
                }),
                "{c}"
            );
        }
        assert!(!tiles.iter().any(|t| t.c > 4));
    }

    #[test]
    fn fitting_members_is_the_most_the_runtime_accepts() {
        // b0 = 54 at 15 plaintext bits: room 2^35 over 6·4096·511·20 per key switch: 136
        // switches, so 128 responses.
        let p = protocol(vec![54, 30], 15, Encoding::Cheetah);
        let budget = layer_budget(&p, 14, LinearOutput::Accumulator).unwrap();
        assert_eq!(fitting_members(&budget), 128);
        for (moduli, plain) in [(vec![54, 30], 15), (vec![60, 49], 16), (vec![60, 49], 37)] {
            let p = protocol(moduli, plain, Encoding::Cheetah);
            let budget = layer_budget(&p, plain - 1, LinearOutput::Accumulator).unwrap();
            let fitting = fitting_members(&budget);
            let with = |members| LinearProtocol {
                encoding: Encoding::Interleaved { members },
                ..p.clone()
            };
            let runs = |members| layer_budget(&with(members), plain - 1, LinearOutput::Accumulator);
            assert!(runs(fitting).is_ok(), "{p:?}");
            assert!(
                matches!(runs(2 * fitting), Err(ConfigError::Encoding(_))),
                "{p:?}"
            );
        }
    }

    #[test]
    fn packings_are_the_most_that_fit_and_two() {
        let s = conv(16, 16, 32);
        let p = protocol(vec![60, 49], 16, Encoding::Interleaved { members: 4096 });
        let g = geometries(&s, &p)
            .into_iter()
            .find(|g| g.tile.c == 16)
            .unwrap();
        // 16 channels per tile, 32 filter groups: 16 responses per ciphertext at most.
        assert_eq!(g.members(), 16);
        let members = |fitting| -> Vec<usize> {
            packings(&s, &p, &g, fitting)
                .iter()
                .map(ConvGeometry::members)
                .collect()
        };
        assert_eq!(members(4096), vec![16, 2]);
        assert_eq!(members(4), vec![4, 2]);
        assert_eq!(members(2), vec![2]);
        assert_eq!(members(1), Vec::<usize>::new());
        let cheetah = protocol(vec![60, 49], 16, Encoding::Cheetah);
        assert_eq!(packings(&s, &cheetah, &g, 4096), vec![g.clone()]);
    }

    /// Both encodings are searched; every candidate is priced as the runtime prices it, and an
    /// interleaved one packs the most responses its tile, filters and primes allow, or two.
    #[test]
    fn candidates_include_packed_ones_priced_by_the_runtime() {
        let s = conv(16, 16, 32);
        let own = protocol(vec![60, 49], 16, Encoding::Cheetah);
        let v = LinearView {
            conv: s.clone(),
            acc_bits: 16,
            protocol: &own,
            filter_l1: vec![16 * 9 * 7; 32],
        };
        let found = layer_candidates(
            &v,
            RingOption::plain(16),
            40,
            &ComputeProfile::builtin(),
            true,
        );
        let packed: Vec<&Candidate> = found
            .iter()
            .filter(|c| c.protocol.encoding != Encoding::Cheetah)
            .collect();
        assert!(!packed.is_empty());
        assert!(
            found
                .iter()
                .any(|c| c.protocol.encoding == Encoding::Cheetah)
        );
        for c in &found {
            let p = &c.protocol;
            let cost = heq_runtime::cost::linear::conv_cost(&s, 16, p, LinearOutput::Accumulator);
            assert_eq!(cost, Ok(c.cost), "{p:?}");
        }
        for c in packed {
            let p = &c.protocol;
            let members = p.encoding.members();
            assert_eq!(p.tile.m, 1);
            assert!(members.is_power_of_two() && members >= 2);
            let most = p.tile.c.min(32);
            let doubled = LinearProtocol {
                encoding: Encoding::Interleaved {
                    members: 2 * members,
                },
                ..p.clone()
            };
            let more_fit = layer_budget(&doubled, 16, LinearOutput::Accumulator).is_ok();
            assert!(
                members == 2 || 2 * members > most || !more_fit,
                "{p:?} could pack more"
            );
            assert_eq!(c.cost.key_switches, (members - 1) * c.cost.cts_down);
            assert_eq!(c.galois_exponents().len(), members.ilog2() as usize);
        }
    }

    #[test]
    fn key_bytes_count_each_context_and_exponent_once() {
        let candidate = |moduli: Vec<u32>, c: usize, members: usize| Candidate {
            protocol: LinearProtocol {
                tile: Tile {
                    c,
                    h: 1,
                    w: 1,
                    m: 1,
                },
                ..protocol(
                    moduli,
                    16,
                    if members == 1 {
                        Encoding::Cheetah
                    } else {
                        Encoding::Interleaved { members }
                    },
                )
            },
            cost: LinearCost::default(),
            products: 0,
            compute_ms: 0.0,
            unpack_bytes: 0,
            unpack_rounds: 0,
        };
        let pk = |m: Vec<u32>| public_key_bytes(&protocol(m, 16, Encoding::Cheetah).he).unwrap();
        let (pk60, pk54) = (pk(vec![60, 49]) as u64, pk(vec![54, 30]) as u64);
        let (g60, g54) = (
            galois_key_bytes(4096, 60) as u64,
            galois_key_bytes(4096, 54) as u64,
        );
        // Exponents of (C_w, members): (8, 4) → N/4+1, N/2+1; (16, 8) → N/8+1, N/4+1, N/2+1;
        // (16, 2) → N/8+1.
        let chosen = [
            candidate(vec![60, 49], 8, 4),
            candidate(vec![60, 49], 16, 8),
            candidate(vec![60, 49], 16, 2),
            candidate(vec![60, 49], 8, 1),
            candidate(vec![54, 30], 16, 2),
            candidate(vec![54, 30], 4, 1),
        ];
        assert_eq!(key_bytes(&chosen), pk60 + 3 * g60 + pk54 + g54);
        assert_eq!(key_bytes(&chosen[3..4]), pk60);
        assert_eq!(key_bytes(&[]), 0);
    }

    #[test]
    fn moduli_menu_is_within_the_security_bound() {
        for n in heq_runtime::params::he::DEGREES {
            let max = heq_runtime::params::he::max_log_q(n);
            for m in moduli_menu(n) {
                assert!(Some(m.iter().sum::<u32>()) <= max, "{n} {m:?}");
            }
        }
        assert_eq!(moduli_menu(4096).len(), 30);
    }
}
