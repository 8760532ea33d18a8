//! Exact bytes, rounds and OT counts of the nonlinear protocols.
//!
//! Every protocol of [`crate::nonlinear`] is a sequence of *rounds*; in each round both parties
//! send one bit-packed message (possibly empty) and then read the peer's. A message of `b` bits
//! takes `⌈b/8⌉` bytes. The functions here count exactly those payload bytes per direction, the
//! rounds, and the random OTs (ROTs) each party consumes as OT sender; the protocol tests assert
//! that the bytes a run puts on the channel equal these numbers. The `cost` of a parameter plan
//! of [`crate::params::nonlinear`] is the cost of executing it. OT-extension traffic (the
//! cryprot-ot silent or IKNP protocols that produce the ROTs) is counted separately by
//! [`crate::cost::ot_extension`].

use crate::params::carry::CarryTree;
use crate::params::nonlinear::{
    ClampPlan, CombinePlan, MaxPoolPlan, RequantPlan, RescalePlan, UnpackPlan, WrapMode,
    shared_bits,
};
use crate::plan::CarryDepth;
use std::ops::{Add, AddAssign};

/// Communication of one protocol run, both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Payload bytes the server sends.
    pub server_bytes: u64,
    /// Payload bytes the client sends.
    pub client_bytes: u64,
    /// Rounds (one message each way per round).
    pub rounds: u64,
    /// Random OTs with the server as OT sender.
    pub server_rots: u64,
    /// Random OTs with the client as OT sender.
    pub client_rots: u64,
}

impl Cost {
    /// One round in which the server sends `server_bits` and the client `client_bits`.
    pub fn round(server_bits: u64, client_bits: u64) -> Cost {
        Cost {
            server_bytes: server_bits.div_ceil(8),
            client_bytes: client_bits.div_ceil(8),
            rounds: 1,
            ..Cost::default()
        }
    }

    /// Random OTs only (no message).
    pub fn rots(server_rots: u64, client_rots: u64) -> Cost {
        Cost {
            server_rots,
            client_rots,
            ..Cost::default()
        }
    }

    /// Payload bytes in both directions.
    pub fn total_bytes(&self) -> u64 {
        self.server_bytes + self.client_bytes
    }

    /// Payload bits per element for a batch of `n` elements.
    pub fn bits_per_element(&self, n: u64) -> f64 {
        (self.total_bytes() * 8) as f64 / n as f64
    }
}

impl Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost {
            server_bytes: self.server_bytes + o.server_bytes,
            client_bytes: self.client_bytes + o.client_bytes,
            rounds: self.rounds + o.rounds,
            server_rots: self.server_rots + o.server_rots,
            client_rots: self.client_rots + o.client_rots,
        }
    }
}

impl AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        *self = *self + o;
    }
}

/// The carries out of `positions` (ascending, below `len`) of `a + b`, `a` the server's and `b`
/// the client's `len`-bit inputs, `n` elements ([`crate::nonlinear::carry::carries`]) at
/// `depth`: [`carry_chain`] or [`carry_tree`].
pub fn carries(n: u64, len: u32, positions: &[u32], depth: CarryDepth) -> Cost {
    match depth {
        CarryDepth::Ripple => carry_chain(n, len),
        CarryDepth::Tree => carry_tree(n, &CarryTree::new(positions, None)),
    }
}

/// Ripple carry chain over `len` bits, whatever the positions read: one round of choice
/// corrections (`len − 1` bits from the server, `len` from the client), one round for bit 0
/// (`n` bits from the server), one round per further bit (one bit each way): `len + 1` rounds,
/// `4·len − 2` bits and `2·len − 1` ROTs per element.
pub fn carry_chain(n: u64, len: u32) -> Cost {
    chain(n, len, 0)
}

/// The carries out of bit `len − 1` of `a + b` and of `(a − d mod 2^len) + b`
/// ([`crate::nonlinear::carry::carry_pair`]) at `depth`. Ripple: the rounds of one
/// [`carry_chain`]; the second sum adds, for each of its bits above `v2(d)`, a server-choice
/// correlated OT and one more bit on the client-choice OT of that bit. Tree: [`carry_tree`] of
/// the tree with the twin's groups.
pub fn carry_pair(n: u64, len: u32, d: u64, depth: CarryDepth) -> Cost {
    if len == 0 {
        return Cost::default();
    }
    let shared = shared_bits(len, d);
    match depth {
        CarryDepth::Ripple => chain(n, len, (len - 1).saturating_sub(shared)),
        CarryDepth::Tree => carry_tree(n, &CarryTree::new(&[len - 1], Some(shared))),
    }
}

/// A chain over `len` bits whose last `own` bits also run the second sum of a
/// [`carry_pair`].
fn chain(n: u64, len: u32, own: u32) -> Cost {
    if len == 0 {
        return Cost::default();
    }
    let (k, o) = (u64::from(len), u64::from(own));
    let mut c = Cost::round((k - 1 + o) * n, k * n)
        + Cost::round(n, 0)
        + Cost::rots(k * n, (k - 1 + o) * n);
    for j in 1..len {
        let per = 1 + u64::from(j >= len - own);
        c += Cost::round(per * n, per * n);
    }
    c
}

/// The log-depth carries of `tree` for `n` elements ([`crate::nonlinear::carry`], tree depth).
///
/// Round 1: the client corrects the choices of one ROT per bit (server as sender), `w` bits for
/// a tree of width `w`. Round 2: per digit of `m` bits the server sends its 1-out-of-`2^m`
/// table, `2^m` entries of the digit's entry bits ([`CarryTree::entry_bits`]: 1 for `G`, 2 with
/// `P`, twice that with the twin's). Round `2 + t`: every node of level `t` with ANDs
/// ([`CarryTree::combines_at`]) takes one ROT per direction and has each party send one
/// correction bit and one message bit per AND (1 for `G` only, 2 with `P`).
///
/// So one carry of `w` bits without twin, in `D = ⌈w/4⌉` digits (all of 4 bits) whose `D − 1`
/// nodes include `⌈log2 D⌉` starting at bit 0 (one AND), costs per element
/// `w + 16 + 32(D − 1) + 6(D − 1) − 2⌈log2 D⌉` bits (rounded up to bytes per round and
/// direction), `w + 2(D − 1)` ROTs and `2 + ⌈log2 D⌉` rounds, against the chain's `4w − 2`
/// bits, `2w − 1` ROTs and `w + 1` rounds: at `w = 28`, 266 bits, 40 ROTs and 5 rounds against
/// 110 bits, 55 ROTs and 29 rounds.
pub fn carry_tree(n: u64, tree: &CarryTree) -> Cost {
    if tree.width == 0 {
        return Cost::default();
    }
    let w = u64::from(tree.width);
    let table: u64 = tree
        .digits
        .iter()
        .map(|d| u64::from(tree.entry_bits(d)) << tree.nodes[d.leaf].width())
        .sum();
    let mut c = Cost::round(0, w * n) + Cost::round(table * n, 0) + Cost::rots(w * n, 0);
    for level in 1..=tree.depth {
        let (nodes, bits) = tree
            .combines_at(level)
            .fold((0u64, 0u64), |(k, b), (_, node)| {
                (k + 1, b + 1 + u64::from(node.ands()))
            });
        c += Cost::round(bits * n, bits * n) + Cost::rots(nodes * n, nodes * n);
    }
    c
}

/// Millionaire comparison `[x < y]` of the server's `x` and the client's `y`, `bits`-bit
/// unsigned, XOR-shared result: the carry out of `¬x + y`.
pub fn millionaire(n: u64, bits: u32, depth: CarryDepth) -> Cost {
    if bits == 0 {
        return Cost::default();
    }
    carries(n, bits, &[bits - 1], depth)
}

/// MSB (and DReLU = 1 − MSB) of `n` shares in `Z_{2^l}`: the carry out of the low `l − 1` bits.
pub fn msb(n: u64, ring_bits: u32, depth: CarryDepth) -> Cost {
    carries(n, ring_bits - 1, &[ring_bits.max(2) - 2], depth)
}

/// DReLU of `x` and of `x − d` for `n` shares in `Z_{2^l}`
/// ([`crate::nonlinear::carry::drelu_pair`]): a [`carry_pair`] on the low `l − 1` bits.
pub fn msb_pair(n: u64, ring_bits: u32, d: u64, depth: CarryDepth) -> Cost {
    carry_pair(n, ring_bits - 1, d, depth)
}

/// A batch of correlated OTs with the client as receiver, in one round (the server's messages
/// do not wait for the corrections, `crate::nonlinear::cot::OneRoundSender`): `cots` correction
/// bits from the client, `message_bits` in total from the server.
pub fn client_cots(cots: u64, message_bits: u64) -> Cost {
    if cots == 0 {
        return Cost::default();
    }
    Cost::round(message_bits, cots) + Cost::rots(cots, 0)
}

/// Multiplexer `d·x` of XOR-shared bits and `w`-bit arithmetic shares: two correlated OTs per
/// element, one in each direction, in one round (each party's corrections and messages in one
/// message).
pub fn mux(n: u64, width: u32) -> Cost {
    if n == 0 {
        return Cost::default();
    }
    let w = u64::from(width);
    Cost::round(n + n * w, n + n * w) + Cost::rots(n, n)
}

/// [`mux`] plus `e·k` for a second XOR-shared bit `e` and a public `k`
/// ([`crate::nonlinear::cot::mux_plus`]): one more correlated OT per element, client as
/// receiver, in the same round.
pub fn mux_plus(n: u64, width: u32) -> Cost {
    if n == 0 {
        return Cost::default();
    }
    let w = u64::from(width);
    Cost::round(n + 2 * n * w, 2 * n + n * w) + Cost::rots(2 * n, n)
}

/// ReLU in `Z_{2^l}`: DReLU then multiplexer (no range information used).
pub fn relu(n: u64, ring_bits: u32, depth: CarryDepth) -> Cost {
    msb(n, ring_bits, depth) + mux(n, ring_bits)
}

/// Max pooling by a comparison tree: `⌈log2 window⌉` levels, each a batched
/// `max(a, b) = b + [a − b ≥ 0]·(a − b)`. `pairs[i]` is the number of comparisons at level `i`.
pub fn max_pool(pairs: &[u64], ring_bits: u32, depth: CarryDepth) -> Cost {
    pairs
        .iter()
        .filter(|&&m| m > 0)
        .fold(Cost::default(), |c, &m| {
            c + msb(m, ring_bits, depth) + mux(m, ring_bits)
        })
}

impl MaxPoolPlan {
    /// Exact cost for `n` outputs: the comparison tree, then the extension of each output.
    pub fn cost(&self, n: u64) -> Cost {
        max_pool(&self.levels, self.ring_bits, self.depth)
            + self.extend.map(|e| e.cost(n)).unwrap_or_default()
    }
}

impl ClampPlan {
    /// Exact cost for `n` elements: per side that can bind a DReLU in the comparison ring, the
    /// two sides as one [`msb_pair`]; the selection in the output ring (one [`mux`], with both
    /// sides a [`mux_plus`]).
    pub fn cost(&self, n: u64) -> Cost {
        let (l, r) = (self.ring_bits, self.out_bits);
        match (self.lower, self.upper) {
            (false, false) => Cost::default(),
            (true, true) => msb_pair(n, l, self.gap(), self.depth) + mux_plus(n, r),
            _ => msb(n, l, self.depth) + mux(n, r),
        }
    }
}

impl RescalePlan {
    /// Exact cost for `n` elements: the carry chain (the low `k` bits, or all `l` for the wrap),
    /// the tie test, and one B2A per needed bit (carry, tie, wrap); faithful truncation computes
    /// no carry of the low bits and no tie.
    pub fn cost(&self, n: u64) -> Cost {
        let carry = u64::from(self.low_carry());
        let wrap = u64::from(self.wrap != WrapMode::None);
        let tie = u64::from(self.tie_test());
        let mut c = if self.tie_test_fused() {
            carry_pair(n, self.shift, self.tie_distance(), self.depth)
        } else {
            carries(n, self.chain_len(), &self.carry_positions(), self.depth)
        };
        if self.tie_test() {
            if !self.tie_test_fused() {
                c += carries(n, self.shift, &[self.shift - 1], self.depth);
            }
            c += mux(n, 1);
        }
        c + client_cots(
            n * (carry + tie + wrap),
            n * ((carry + tie) * u64::from(self.out_bits) + wrap * u64::from(self.wrap_bits())),
        )
    }
}

impl RequantPlan {
    /// Exact cost for `n` elements.
    pub fn cost(&self, n: u64) -> Cost {
        self.rescale.cost(n) + self.clamp.cost(n)
    }
}

impl UnpackPlan {
    /// Exact cost for `n` packed words (`n·b` fields).
    pub fn cost(&self, n: u64) -> Cost {
        let k = n * u64::from(self.carries());
        client_cots(k, k * u64::from(self.out_bits))
    }
}

impl CombinePlan {
    /// Exact cost with `input_lens[i]` elements in input `i` and `n_out` outputs.
    pub fn cost(&self, input_lens: &[u64], n_out: u64) -> Cost {
        let align = self
            .inputs
            .iter()
            .zip(input_lens)
            .filter_map(|((_, _, ext), &n)| ext.map(|p| p.cost(n)))
            .fold(Cost::default(), |a, c| a + c);
        align + self.requant.cost(n_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_costs_one_cot_per_carry() {
        let packing = crate::plan::Packing {
            factor: 3,
            field_bits: 10,
            dim: crate::plan::PackDim::Spatial,
        };
        // Carries c_1, c_2, and c_3 for the 40-bit ring (wider than a field).
        let p = UnpackPlan::new(30, packing, (-255, 255), 40).expect("plan");
        assert_eq!(p.cost(100), client_cots(300, 300 * 40));
    }

    #[test]
    fn carry_chain_counts() {
        let c = carry_chain(10, 3);
        // R1: 20 / 30 bits; R2: 10 / 0; two step rounds of 10 / 10.
        assert_eq!(
            c,
            Cost {
                server_bytes: 3 + 2 + 2 + 2,
                client_bytes: 4 + 2 + 2,
                rounds: 4,
                server_rots: 30,
                client_rots: 20
            }
        );
        assert_eq!(carry_chain(5, 0), Cost::default());
    }
}
