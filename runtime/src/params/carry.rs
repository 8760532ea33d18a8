//! The shape of a log-depth carry computation ([`crate::plan::CarryDepth::Tree`]): which
//! generate/propagate pairs are combined in which round. Both parties and the cost model build
//! the same [`CarryTree`] from public numbers only, so the protocol
//! ([`crate::nonlinear::carry`]) and its exact cost ([`crate::cost::nonlinear::carry_tree`])
//! cannot disagree.
//!
//! For `a + b` (server's `a`, client's `b`) a group of bits `[s, e]` has `G` (a carry leaves
//! it) and `P` (a carry passes through it: every `a_j ⊕ b_j` is 1); two adjacent groups combine
//! as `(G, P) = (G_hi ⊕ P_hi·G_lo, P_hi·P_lo)`, and the carry out of bit `e` is `G` of `[0, e]`.
//! The tree cuts `[0, max position]` into segments that end at the requested positions, each
//! segment into digits of [`DIGIT_BITS`] bits from its low end (the last one shorter), whose
//! `(G, P)` one 1-out-of-`2^m` OT delivers (CrypTFlow2's millionaire leaves, `protocols.md`
//! §1.8), reduces each segment's digits by a balanced binary tree (adjacent groups paired level
//! by level), then chains the segments from the bottom. A node's level is one more than its
//! deeper child's, and a level is one round: a group that starts at bit 0 needs only `G` (one
//! AND), any other group `G` and `P` (two ANDs sharing the factor `P_hi`).
//!
//! With a twin sum `(a − d) + b` ([`crate::nonlinear::carry::carry_pair`]) the server's summands
//! agree on the `z = v2(d)` low bits, so every group below `z` is shared; a digit reaching bit
//! `z` has its twin's `(G', P')` in the same OT (more table bits, no more OTs), except the
//! single-bit digit `[z, z]`, whose twin is local (`g'_z = g_z ⊕ b_z`, `p'_z = ¬p_z`), and every
//! group reaching bit `z` has a twin. A twin group whose upper half is that single-bit digit is
//! local too: `G' = G ⊕ b_z ⊕ G_lo` and `P' = P_lo ⊕ P`.

/// Bits per leaf digit (CrypTFlow2's `MILL_PARAM`): its 1-out-of-16 OT takes 4 random OTs, the
/// most whose keys fit the slots of a 128-bit pad (8 slots of up to 4 table bits).
pub const DIGIT_BITS: u32 = 4;

/// What a node of a [`CarryTree`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A digit of the main sum: `(G, P)` from its OT.
    Leaf,
    /// A digit of the twin sum reaching bit `z`: from the main digit's OT, or local for the
    /// single-bit digit `[z, z]`.
    TwinLeaf,
    /// `(G_hi ⊕ P_hi·G_lo, P_hi·P_lo)` of two nodes (indices), computed in the node's round.
    Combine {
        /// The upper group.
        hi: usize,
        /// The lower group.
        lo: usize,
    },
    /// The twin of `main`, whose upper half is the single-bit digit `[z, z]`, from `main` and
    /// its lower half `lo`: local.
    TwinLocal {
        /// The main sum's node over the same bits.
        main: usize,
        /// Its lower half (shared by both sums).
        lo: usize,
    },
}

/// One group of bits `[start, end]` of the main or the twin sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    /// What the node is.
    pub kind: NodeKind,
    /// Lowest bit of the group.
    pub start: u32,
    /// Highest bit of the group.
    pub end: u32,
    /// The round after the digits' two in which its `G` (and `P`) are known (0: digits).
    pub level: u32,
}

impl Node {
    /// Whether the group needs its propagate bit `P` (only groups above bit 0 are ever the
    /// upper half of a combination).
    pub fn needs_p(&self) -> bool {
        self.start > 0
    }

    /// Bits of its `(G, P)`: 1, or 2 if [`Node::needs_p`].
    pub fn bits(&self) -> u32 {
        1 + u32::from(self.needs_p())
    }

    /// ANDs a [`NodeKind::Combine`] costs: `P_hi·G_lo`, and `P_hi·P_lo` if [`Node::needs_p`]
    /// (0 for any other kind).
    pub fn ands(&self) -> u32 {
        match self.kind {
            NodeKind::Combine { .. } => self.bits(),
            _ => 0,
        }
    }

    /// Bits of the group.
    pub fn width(&self) -> u32 {
        self.end - self.start + 1
    }
}

/// One leaf digit: its main node and, if its OT also delivers the twin's `(G', P')`, the twin's
/// node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digit {
    /// The main sum's leaf.
    pub leaf: usize,
    /// The twin's leaf, when it comes from this digit's OT.
    pub twin: Option<usize>,
}

/// The combination schedule of one log-depth carry computation: every node in an order in
/// which children precede parents, the digits (low to high, covering `[0, width)`), the node
/// of each requested carry, and the twin's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarryTree {
    /// Bits read: `0..=` the highest requested position.
    pub width: u32,
    /// The bit `z` below which the twin shares the main sum's groups (`None`: no twin, or no
    /// twin bits of its own).
    pub twin_from: Option<u32>,
    /// All nodes, children first.
    pub nodes: Vec<Node>,
    /// The leaf digits, low to high.
    pub digits: Vec<Digit>,
    /// The node whose `G` is the carry out of each requested position.
    pub outputs: Vec<usize>,
    /// The node whose `G` is the twin's carry out of the highest position (`None` without a
    /// twin).
    pub twin_output: Option<usize>,
    /// Rounds after the digits' two (the deepest output's level).
    pub depth: u32,
}

impl CarryTree {
    /// The tree of the carries out of `positions` (strictly ascending) of a sum and, with
    /// `shared = Some(z)`, of the twin sum whose server summand agrees with the main one on the
    /// `z` low bits (`z ≥ width`: no twin bits of its own; the twin's carry is the main one).
    /// Bits above the highest position are not read.
    pub fn new(positions: &[u32], shared: Option<u32>) -> Self {
        let width = positions.last().map_or(0, |&p| p + 1);
        let mut t = CarryTree {
            width,
            twin_from: shared.filter(|&z| z < width),
            nodes: Vec::new(),
            digits: Vec::new(),
            outputs: Vec::with_capacity(positions.len()),
            twin_output: None,
            depth: 0,
        };
        let mut start = 0;
        let mut below: Option<usize> = None;
        for &p in positions {
            let digits: Vec<usize> = (start..=p)
                .step_by(DIGIT_BITS as usize)
                .map(|s| {
                    t.nodes.push(Node {
                        kind: NodeKind::Leaf,
                        start: s,
                        end: (s + DIGIT_BITS - 1).min(p),
                        level: 0,
                    });
                    let leaf = t.nodes.len() - 1;
                    t.digits.push(Digit { leaf, twin: None });
                    leaf
                })
                .collect();
            let root = t.reduce(digits);
            let out = below.map_or(root, |b| t.combine(root, b));
            t.outputs.push(out);
            below = Some(out);
            start = p + 1;
        }
        if let (Some(z), Some(&top)) = (shared, t.outputs.last()) {
            t.twin_output = Some(if z >= width { top } else { t.add_twin(z, top) });
        }
        t.depth = t
            .outputs
            .iter()
            .chain(&t.twin_output)
            .map(|&i| t.nodes[i].level)
            .max()
            .unwrap_or(0);
        t
    }

    /// Adds the combination of `hi` over `lo`; returns its index.
    fn combine(&mut self, hi: usize, lo: usize) -> usize {
        let (h, l) = (self.nodes[hi], self.nodes[lo]);
        self.nodes.push(Node {
            kind: NodeKind::Combine { hi, lo },
            start: l.start,
            end: h.end,
            level: 1 + h.level.max(l.level),
        });
        self.nodes.len() - 1
    }

    /// Reduces adjacent groups (low to high) pairwise, level by level; returns the root.
    fn reduce(&mut self, mut groups: Vec<usize>) -> usize {
        while groups.len() > 1 {
            groups = groups
                .chunks(2)
                .map(|pair| match pair {
                    [lo, hi] => self.combine(*hi, *lo),
                    _ => pair[0],
                })
                .collect();
        }
        groups[0]
    }

    /// Whether node `i` is the single-bit digit `[z, z]`.
    fn is_bit_digit(&self, i: usize, z: u32) -> bool {
        let n = self.nodes[i];
        n.kind == NodeKind::Leaf && n.start == z && n.end == z
    }

    /// Adds the twin of every node reaching bit `z` (`z` below the width) under `top`; returns
    /// the twin of `top`.
    fn add_twin(&mut self, z: u32, top: usize) -> usize {
        let mut twin: Vec<Option<usize>> = vec![None; self.nodes.len()];
        for i in 0..=top {
            let n = self.nodes[i];
            if n.end < z {
                continue;
            }
            let kind = match n.kind {
                NodeKind::Combine { hi, lo } if self.is_bit_digit(hi, z) => {
                    NodeKind::TwinLocal { main: i, lo }
                }
                NodeKind::Combine { hi, lo } => NodeKind::Combine {
                    hi: twin[hi].unwrap_or(hi),
                    lo: twin[lo].unwrap_or(lo),
                },
                NodeKind::Leaf => NodeKind::TwinLeaf,
                other => other,
            };
            self.nodes.push(Node { kind, ..n });
            let k = self.nodes.len() - 1;
            twin[i] = Some(k);
            if n.kind == NodeKind::Leaf
                && !self.is_bit_digit(i, z)
                && let Some(d) = self.digits.iter_mut().find(|d| d.leaf == i)
            {
                d.twin = Some(k);
            }
        }
        twin[top].unwrap_or(top)
    }

    /// Table bits of a digit's OT per entry: its `(G, P)` and the twin's, if it has one.
    pub fn entry_bits(&self, d: &Digit) -> u32 {
        self.nodes[d.leaf].bits() * (1 + u32::from(d.twin.is_some()))
    }

    /// The nodes computed in round `level` (≥ 1) with at least one AND, in order.
    pub fn combines_at(&self, level: u32) -> impl Iterator<Item = (usize, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(move |(_, n)| n.level == level && n.ands() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(G, P)` of every node over plain summands, by the node definitions; returns the outputs.
    fn evaluate(t: &CarryTree, a: u64, a2: u64, b: u64) -> (Vec<bool>, Option<bool>) {
        let bit = |x: u64, j: u32| (x >> j) & 1 == 1;
        let digit = |x: u64, n: &Node| {
            let m = (1u64 << n.width()) - 1;
            let sum = ((x >> n.start) & m) + ((b >> n.start) & m);
            (sum > m, sum == m)
        };
        let mut gp: Vec<(bool, bool)> = Vec::new();
        for n in &t.nodes {
            let v = match n.kind {
                NodeKind::Leaf => digit(a, n),
                NodeKind::TwinLeaf => digit(a2, n),
                NodeKind::Combine { hi, lo } => {
                    let (h, l) = (gp[hi], gp[lo]);
                    (h.0 ^ (h.1 & l.0), h.1 & l.1)
                }
                NodeKind::TwinLocal { main, lo } => {
                    let (m, l) = (gp[main], gp[lo]);
                    (m.0 ^ bit(b, n.end) ^ l.0, l.1 ^ m.1)
                }
            };
            gp.push(v);
        }
        (
            t.outputs.iter().map(|&i| gp[i].0).collect(),
            t.twin_output.map(|i| gp[i].0),
        )
    }

    #[test]
    fn trees_compute_every_carry_in_logarithmic_depth() {
        for width in 1u32..=10 {
            let mut sets: Vec<Vec<u32>> = vec![
                vec![width - 1],
                (0..width).collect(),
                vec![width / 2, width - 1],
                vec![0, width - 1],
            ];
            for set in &mut sets {
                set.dedup();
            }
            let m = (1u64 << width) - 1;
            // Every summand up to 6 bits, a spread with the edges above.
            let step = if width <= 6 { 1 } else { 7 };
            let summands: Vec<u64> = (0..=m).step_by(step).chain([m]).collect();
            for positions in sets {
                for z in 0..=width {
                    let t = CarryTree::new(&positions, Some(z));
                    if positions.len() == 1 {
                        let digits = width.div_ceil(DIGIT_BITS);
                        assert_eq!(t.depth, digits.next_power_of_two().trailing_zeros());
                    }
                    // Two distances with `v2(d) = z` (the carries past bit `z` differ).
                    for d in [1u64 << z, 3 << z] {
                        for &a in &summands {
                            for &b in &summands {
                                let a2 = a.wrapping_sub(d) & m;
                                let carry = |x: u64, j: u32| {
                                    let k = (1u64 << (j + 1)) - 1;
                                    (x & k) + (b & k) > k
                                };
                                let (out, twin) = evaluate(&t, a, a2, b);
                                let want: Vec<bool> =
                                    positions.iter().map(|&j| carry(a, j)).collect();
                                assert_eq!(out, want, "{positions:?} a {a} b {b}");
                                assert_eq!(twin, Some(carry(a2, width - 1)), "z {z} d {d}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn twin_of_a_top_bit_is_local() {
        // Five bits: digits [0, 3] and [4, 4]; z = 4 makes the twin's top node local.
        let t = CarryTree::new(&[4], Some(4));
        let twin = t.twin_output.expect("twin");
        assert!(matches!(t.nodes[twin].kind, NodeKind::TwinLocal { .. }));
        assert!(t.digits.iter().all(|d| d.twin.is_none()));
        let ands: u32 = t.nodes.iter().map(Node::ands).sum();
        let alone = CarryTree::new(&[4], None);
        assert_eq!(ands, alone.nodes.iter().map(Node::ands).sum::<u32>());
        // z = 0: both digits carry the twin in their OTs; the twin's top node has its own AND.
        let t = CarryTree::new(&[4], Some(0));
        assert!(t.digits.iter().all(|d| d.twin.is_some()));
        assert_eq!(t.nodes.iter().map(Node::ands).sum::<u32>(), 2);
        assert_eq!(t.depth, 1);
    }
}
