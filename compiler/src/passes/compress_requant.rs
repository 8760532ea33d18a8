//! `CompressRequant`: gives every requantization the smallest shift, and multipliers for it,
//! that produce bit-identical clamped outputs over the inputs the range analysis proves
//! (docs/semantics.md §6). The frontend's multipliers carry 24 significant bits whatever the
//! output precision needs; the shift sets the length of the truncation's carry chain and the
//! multiplier width the share ring of `x·m`, so both shrink with it (the rings follow from the
//! new multipliers in `heq_runtime::params::nonlinear`).
//!
//! **One input** (a linear layer's output channel over `|acc| < 2^(acc_bits − 1)`, a `Rescale`
//! multiplier over its input range, an average pool's multiplier over the window sums of its
//! count): `x ↦ clamp(round(x·m / 2^k), lo, hi)` is a non-decreasing step function of `x`
//! (mirrored for `m < 0`). Two such functions agree on the integers of `[x0, x1]` iff they agree
//! at `x0` and every level above `f(x0)` up to `f(x1)` starts at the same `x` ([`Staircase`]).
//! For a shift `k'` and ties to even, `round(t / 2^k') ≥ j` iff
//! `t ≥ (2j − 1)·2^(k'−1) + (j mod 2)`, so each level start `t_j` asks `t_j·m' ≥ ..` and
//! `(t_j − 1)·m' < ..`: an interval of admissible multipliers `m'`, intersected over the levels
//! (`O(levels)` per shift, exact). A multiplier `m'` at `k'` gives `2m'` at `k' + 1`, so
//! admissibility is monotone in `k'` and a binary search finds the smallest shift. Per layer,
//! the shift is the largest of its multipliers' smallest shifts, and each multiplier the least
//! admissible one there.
//!
//! **Residual add** `clamp(round((a·m_a + b·m_b) / 2^k))`: for each value of the input with the
//! smaller range, the function of the other input is a staircase with an offset `a·m_a'`; for
//! shifts `k'` from 0 up and candidates `m_a'` next to `m_a·2^(k'−k)`, the staircases give the
//! interval of `m_b'`. The result is then checked exhaustively over all input pairs (at most
//! [`MAX_ADD_PAIRS`]); larger adds stay unchanged.
//!
//! **Average pools** whose ties need a window ([`Rounding::HalfEvenWithin`], exact means) get
//! the smallest shift the tie-window analysis allows ([`crate::analysis::ties::pool_tie_window`]),
//! checked exhaustively against the original over every window sum of every count; the other
//! pools are one-input problems per window count.
//!
//! The compressed requantizations round ties to even; their tie rule is then re-derived by the
//! tie analysis ([`super::ProveNoTies`]'s proofs): `NoTies` only where proven. Runs on the final
//! graph (after mixed precision), before lowering.

use super::Pass;
use super::prove_no_ties::{
    acc_max_abs, exact_pool_requant, proven_add_rounding, proven_requant_rounding,
};
use crate::error::Result;
use crate::ir::{Layer, LayerGraph, LayerOp, Requant};
use heq_runtime::params::nonlinear::pool_window_sizes;
use heq_runtime::plan::{AddSpec, AvgPoolSpec, Rounding};
use heq_runtime::ring::round_shift_within;
use std::collections::BTreeMap;

/// Requantization compression as a pass.
pub struct CompressRequant;

impl Pass for CompressRequant {
    fn name(&self) -> &'static str {
        "compress_requant"
    }

    fn run(&mut self, g: &mut LayerGraph) -> Result<bool> {
        let mut changed = false;
        for n in g.order().unwrap_or_default() {
            let layer = g.layer(n).clone();
            let range = |i: usize| wide(g.tensor(layer.inputs[i]).range);
            let proven =
                |r: &Requant| proven_requant_rounding(g, &layer, r).unwrap_or(Rounding::HalfEven);
            let op = match &layer.op {
                LayerOp::Linear(l) => l.requant.as_ref().zip(l.acc).and_then(|(r, acc)| {
                    // The published width, not per-channel ranges: the public multipliers
                    // then depend on no more of the weights than the plan already shows.
                    let bound = acc_max_abs(acc.sound);
                    let domains = vec![(-bound, bound); r.multipliers.len()];
                    let mut l = l.clone();
                    l.requant = Some(compress_requant(r, &domains, proven)?);
                    Some(LayerOp::Linear(l))
                }),
                LayerOp::Rescale(r) => {
                    compress_requant(r, &vec![range(0); r.multipliers.len()], proven)
                        .map(LayerOp::Rescale)
                }
                LayerOp::Add(a) => compress_add(a, range(0), range(1), |c: &AddSpec| {
                    proven_add_rounding(g, &layer, c)
                })
                .map(LayerOp::Add),
                LayerOp::AvgPool(a) => compress_pool(g, &layer, a, proven).map(|requant| {
                    LayerOp::AvgPool(AvgPoolSpec {
                        requant,
                        ..a.clone()
                    })
                }),
                LayerOp::MaxPool(_) | LayerOp::Concat | LayerOp::Reshape => None,
            };
            if let Some(op) = op {
                g.layer_mut(n).op = op;
                changed = true;
            }
        }
        Ok(changed)
    }
}

/// Most output levels a staircase may have; a requantization with more stays unchanged.
const MAX_LEVELS: i128 = 1 << 20;

/// Most input pairs of a residual add that compression checks exhaustively; a larger add stays
/// unchanged.
pub const MAX_ADD_PAIRS: i128 = 1 << 22;

/// Most window sums (over all counts) an average pool's tie-window compression checks
/// exhaustively; a larger pool keeps its shift.
const MAX_POOL_SUMS: i128 = 1 << 24;

/// Candidates on each side of `m_a·2^(k'−k)` tried for a residual add's first multiplier.
const ADD_SEARCH_RADIUS: i128 = 4;

/// Largest multiplier magnitude compression produces.
const MAX_MULTIPLIER: i128 = (1 << 62) - 1;

/// Largest input magnitude compression handles (products stay far inside `i128`).
const MAX_INPUT: i128 = 1 << 62;

/// A range of `i64` as `i128`.
fn wide((lo, hi): (i64, i64)) -> (i128, i128) {
    (i128::from(lo), i128::from(hi))
}

/// `clamp(round((x·m + extra) / 2^k), lo, hi)` with the rule's ties to even (within its window),
/// as the reference executor computes it (where a rule says no tie occurs, ties to even give
/// the same result).
fn requantize(
    x: i128,
    m: i128,
    extra: i128,
    k: u32,
    clamp: (i64, i64),
    rounding: Rounding,
) -> i128 {
    let window = rounding.tie_window().unwrap_or(0);
    round_shift_within(x * m + extra, k, window)
        .half_even()
        .clamp(i128::from(clamp.0), i128::from(clamp.1))
}

/// A non-decreasing integer function on `[x0, x1]`: its value at `x0`, the first argument of
/// every higher level up to its value at `x1`, and that value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Staircase {
    /// The domain `[x0, x1]`.
    pub domain: (i128, i128),
    /// `f(x0)`.
    pub first: i128,
    /// `(j, t_j)` for every level `j` in `f(x0) + 1 ..= f(x1)`: the smallest `x` with
    /// `f(x) ≥ j`.
    pub rises: Vec<(i128, i128)>,
    /// `f(x1)`.
    pub last: i128,
}

impl Staircase {
    /// The staircase of a non-decreasing `f` on `[x0, x1]` (binary search per level); `None`
    /// beyond [`MAX_LEVELS`] levels.
    pub fn of(f: impl Fn(i128) -> i128, (x0, x1): (i128, i128)) -> Option<Staircase> {
        let (first, last) = (f(x0), f(x1));
        if last - first > MAX_LEVELS {
            return None;
        }
        let mut rises = Vec::new();
        let (mut level, mut from) = (first, x0);
        while level < last {
            // f(lo) ≤ level < f(hi).
            let (mut lo, mut hi) = (from, x1);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if f(mid) > level { hi = mid } else { lo = mid }
            }
            let reached = f(hi);
            rises.extend((level + 1..=reached).map(|j| (j, hi)));
            (level, from) = (reached, hi);
        }
        Some(Staircase {
            domain: (x0, x1),
            first,
            rises,
            last,
        })
    }

    /// Narrows `ms` to the multipliers `m ≥ 0` whose `clamp(round((x·m + extra) / 2^k))`
    /// (ties to even) equals this staircase at every `x` of its domain.
    fn admit(&self, extra: i128, k: u32, clamp: (i64, i64), ms: &mut Multipliers) {
        let (x0, x1) = self.domain;
        ms.reach(x0, extra, self.first, k, clamp);
        for &(j, t) in &self.rises {
            ms.reach(t, extra, j, k, clamp);
            ms.stay_below(t - 1, extra, j, k, clamp);
            if ms.is_empty() {
                return;
            }
        }
        ms.stay_below(x1, extra, self.last + 1, k, clamp);
    }

    /// The multipliers `m ≥ 0` that reproduce this staircase at shift `k` (no offset).
    fn admissible(&self, k: u32, clamp: (i64, i64)) -> Multipliers {
        let mut ms = Multipliers::non_negative();
        self.admit(0, k, clamp, &mut ms);
        ms
    }

    /// The smallest shift up to `max_shift` at which some multiplier reproduces this staircase;
    /// `None` if none does, not even at `max_shift`.
    fn smallest_shift(&self, max_shift: u32, clamp: (i64, i64)) -> Option<u32> {
        let fits = |k: u32| !self.admissible(k, clamp).is_empty();
        if !fits(max_shift) {
            return None;
        }
        // A multiplier m at k gives the same function as 2m at k + 1: fits is monotone.
        let (mut lo, mut hi) = (0, max_shift);
        if fits(0) {
            return Some(0);
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) { hi = mid } else { lo = mid }
        }
        Some(hi)
    }
}

/// The integers `m` with `lo ≤ m ≤ hi` (empty when `lo > hi`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Multipliers {
    lo: i128,
    hi: i128,
}

impl Multipliers {
    /// `0 ..= MAX_MULTIPLIER`.
    fn non_negative() -> Self {
        Multipliers {
            lo: 0,
            hi: MAX_MULTIPLIER,
        }
    }

    fn is_empty(&self) -> bool {
        self.lo > self.hi
    }

    /// 0 if a member, else the least odd member, else the least: an odd multiplier keeps the
    /// shift from holding a factor of two that a smaller shift would do without, so tie proofs
    /// see the real shift (and 0 never ties).
    fn preferred(&self) -> i128 {
        if self.lo > 0 && self.lo % 2 == 0 && self.lo < self.hi {
            self.lo + 1
        } else {
            self.lo
        }
    }

    /// Keeps the `m` with `x·m ≥ c`.
    fn at_least(&mut self, x: i128, c: i128) {
        match x.signum() {
            1 => self.lo = self.lo.max(ceil_div(c, x)),
            -1 => self.hi = self.hi.min(floor_div(c, x)),
            _ if c > 0 => self.hi = self.lo - 1,
            _ => {}
        }
    }

    /// Keeps the `m` with `x·m ≤ c`.
    fn at_most(&mut self, x: i128, c: i128) {
        self.at_least(-x, -c);
    }

    /// Keeps the `m` with `clamp(round((x·m + extra) / 2^k)) ≥ j`.
    fn reach(&mut self, x: i128, extra: i128, j: i128, k: u32, (lo, hi): (i64, i64)) {
        if j > i128::from(hi) {
            self.hi = self.lo - 1;
        } else if j > i128::from(lo) {
            self.at_least(x, level_start(j, k) - extra);
        }
    }

    /// Keeps the `m` with `clamp(round((x·m + extra) / 2^k)) < j`.
    fn stay_below(&mut self, x: i128, extra: i128, j: i128, k: u32, (lo, hi): (i64, i64)) {
        if j <= i128::from(lo) {
            self.hi = self.lo - 1;
        } else if j <= i128::from(hi) {
            self.at_most(x, level_start(j, k) - 1 - extra);
        }
    }
}

/// The smallest `t` with `round(t / 2^k) ≥ j`, ties to even: past the midpoint
/// `(2j − 1)·2^(k−1)`, or on it when `j` is even.
pub fn level_start(j: i128, k: u32) -> i128 {
    if k == 0 {
        j
    } else {
        ((2 * j - 1) << (k - 1)) + (j & 1)
    }
}

/// `⌊a / b⌋` (`b ≠ 0`).
fn floor_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && (a < 0) != (b < 0) {
        q - 1
    } else {
        q
    }
}

/// `⌈a / b⌉` (`b ≠ 0`).
fn ceil_div(a: i128, b: i128) -> i128 {
    -floor_div(-a, b)
}

/// `x ↦ f(x)` as a non-decreasing function: for `m < 0` the domain is mirrored (`x = −u`), so
/// that the multiplier is `|m|`. Returns the oriented domain and the sign of `m` (1 for 0).
fn orient(m: i64, (x0, x1): (i128, i128)) -> ((i128, i128), i128) {
    if m < 0 {
        ((-x1, -x0), -1)
    } else {
        ((x0, x1), 1)
    }
}

/// The requantization `r` with the smallest shift at which every multiplier `i` has a
/// replacement giving identical clamped outputs on the integers of `domains[i]` (ties to even),
/// the least odd one there, and the tie rule `proven` derives for it; if `r` is
/// [`Rounding::NoTies`], the smallest such shift whose replacement keeps `NoTies` (the tie test
/// costs more than a few bits of shift). `None` when nothing changes or the search gives up
/// (more than [`MAX_LEVELS`] levels, a domain beyond `2^62`, a rounding that only its tie
/// window reproduces, wider multipliers).
pub fn compress_requant(
    r: &Requant,
    domains: &[(i128, i128)],
    proven: impl Fn(&Requant) -> Rounding,
) -> Option<Requant> {
    let candidates = shift_candidates(r, domains)?.map(|(multipliers, shift)| Requant {
        multipliers,
        shift,
        clamp: r.clamp,
        rounding: Rounding::HalfEven,
    });
    let compressed = first_kept(r.rounding, candidates, proven)?;
    let bits = heq_runtime::plan::multiplier_bits;
    let narrower = bits(&compressed.multipliers) <= bits(&r.multipliers);
    (narrower && compressed != *r).then_some(compressed)
}

/// The first candidate whose tie rule (`proven`, written into it) is `NoTies` where `original`
/// is.
fn first_kept(
    original: Rounding,
    candidates: impl Iterator<Item = Requant>,
    proven: impl Fn(&Requant) -> Rounding,
) -> Option<Requant> {
    candidates
        .map(|mut c| {
            c.rounding = proven(&c);
            c
        })
        .find(|c| original != Rounding::NoTies || c.rounding == Rounding::NoTies)
}

/// For every shift from the smallest at which each multiplier `i` of `r` with a domain
/// (`domains` may be shorter than `r.multipliers`) has a replacement with identical clamped
/// outputs on `domains[i]`, up to `r.shift`: the replacements there (the least odd ones).
fn shift_candidates(
    r: &Requant,
    domains: &[(i128, i128)],
) -> Option<impl Iterator<Item = (Vec<i64>, u32)>> {
    let stairs = r
        .multipliers
        .iter()
        .zip(domains)
        .map(|(&m, &domain)| {
            if domain.0.abs().max(domain.1.abs()) >= MAX_INPUT || domain.0 > domain.1 {
                return None;
            }
            let (domain, sign) = orient(m, domain);
            let m = i128::from(m);
            let f = |u: i128| requantize(sign * u, m, 0, r.shift, r.clamp, r.rounding);
            Some((Staircase::of(f, domain)?, sign))
        })
        .collect::<Option<Vec<_>>>()?;
    let first = stairs
        .iter()
        .map(|(s, _)| s.smallest_shift(r.shift, r.clamp))
        .try_fold(0, |k, s| Some(k.max(s?)))?;
    let clamp = r.clamp;
    Some((first..=r.shift).map_while(move |shift| {
        let multipliers = stairs
            .iter()
            .map(|(s, sign)| i64::try_from(sign * s.admissible(shift, clamp).preferred()).ok())
            .collect::<Option<Vec<_>>>()?;
        Some((multipliers, shift))
    }))
}

/// The residual add `a` on inputs in `ra` and `rb` with the smallest shift (and multipliers next
/// to the scaled originals) that gives identical clamped outputs on every pair of inputs,
/// checked exhaustively, with the tie rule `proven` derives for it (keeping `NoTies` as
/// [`compress_requant`] does). `None` when no smaller shift is found or the inputs have more
/// than [`MAX_ADD_PAIRS`] pairs.
pub fn compress_add(
    a: &AddSpec,
    ra: (i128, i128),
    rb: (i128, i128),
    proven: impl Fn(&AddSpec) -> Rounding,
) -> Option<AddSpec> {
    let size = |(lo, hi): (i128, i128)| hi - lo + 1;
    if size(ra).checked_mul(size(rb))? > MAX_ADD_PAIRS {
        return None;
    }
    // The outer input is the one with fewer values: one staircase over the other per value.
    let swap = size(ra) > size(rb);
    let ((mo, ro), (mi, ri)) = if swap {
        ((a.m_b, rb), (a.m_a, ra))
    } else {
        ((a.m_a, ra), (a.m_b, rb))
    };
    let ((o0, o1), so) = orient(mo, ro);
    let (inner, si) = orient(mi, ri);
    let (mo_abs, mi_abs) = (i128::from(mo).abs(), i128::from(mi).abs());
    let original =
        |o: i128, i: i128| requantize(o, mo_abs, i * mi_abs, a.shift, a.clamp, a.rounding);
    let stairs = (o0..=o1)
        .map(|o| Staircase::of(|i| original(o, i), inner).map(|s| (o, s)))
        .collect::<Option<Vec<_>>>()?;
    // The multiplier of the inner input reproducing every staircase with `m_outer` at shift `k`.
    let inner_multiplier = |m_outer: i128, k: u32| {
        let mut ms = Multipliers::non_negative();
        for (o, s) in &stairs {
            s.admit(o * m_outer, k, a.clamp, &mut ms);
            if ms.is_empty() {
                return None;
            }
        }
        Some(ms.preferred())
    };
    let agrees = |m_outer: i128, m_inner: i128, k: u32| {
        (o0..=o1).all(|o| {
            (inner.0..=inner.1).all(|i| {
                let value = requantize(o, m_outer, i * m_inner, k, a.clamp, Rounding::HalfEven);
                value == original(o, i)
            })
        })
    };
    let spec = |m_outer: i128, m_inner: i128, shift: u32| {
        let (outer, inner) = (
            i64::try_from(so * m_outer).ok()?,
            i64::try_from(si * m_inner).ok()?,
        );
        let (m_a, m_b) = if swap { (inner, outer) } else { (outer, inner) };
        let mut c = AddSpec {
            m_a,
            m_b,
            shift,
            clamp: a.clamp,
            rounding: Rounding::HalfEven,
        };
        c.rounding = proven(&c);
        let kept = a.rounding != Rounding::NoTies || c.rounding == Rounding::NoTies;
        kept.then_some(c)
    };
    (0..a.shift).find_map(|k| {
        let center = heq_runtime::ring::round_shift(mo_abs, a.shift - k).half_even();
        (0..=ADD_SEARCH_RADIUS)
            .flat_map(|d| [center + d, center - d])
            .filter(|&m| m >= 0)
            .find_map(|m_outer| {
                let m_inner = inner_multiplier(m_outer, k)?;
                let c = spec(m_outer, m_inner, k)?;
                agrees(m_outer, m_inner, k).then_some(c)
            })
    })
}

/// The window sums of each count of an average pool over inputs in `range`: for every count
/// that occurs, the hull of `[len·lo, len·hi]` over its windows of `len` in-bounds elements.
fn pool_sum_domains(a: &AvgPoolSpec, (lo, hi): (i128, i128)) -> BTreeMap<usize, (i128, i128)> {
    let mut domains = BTreeMap::new();
    for (len, counted) in pool_window_sizes(&a.pool)
        .into_iter()
        .zip(a.window_counts())
    {
        let len = len as i128;
        let d = domains.entry(counted).or_insert((len * lo, len * hi));
        *d = (d.0.min(len * lo), d.1.max(len * hi));
    }
    domains
}

/// The compressed requantization of the average pool `layer` (spec `a`): with a tie window,
/// the smallest shift of the tie-window analysis, checked exhaustively against the original;
/// otherwise the one-input compression per window count ([`compress_requant`], tie rule from
/// `proven`), the counts that never occur scaled to the new shift. `None` when nothing changes.
fn compress_pool(
    g: &LayerGraph,
    layer: &Layer,
    a: &AvgPoolSpec,
    proven: impl Fn(&Requant) -> Rounding,
) -> Option<Requant> {
    let r = &a.requant;
    let domains = pool_sum_domains(a, wide(g.tensor(layer.inputs[0]).range));
    if let Rounding::HalfEvenWithin(_) = r.rounding {
        let candidate = exact_pool_requant(g, layer, 0)?;
        let sums: i128 = domains.values().map(|(lo, hi)| hi - lo + 1).sum();
        if candidate.shift >= r.shift || sums > MAX_POOL_SUMS {
            return None;
        }
        let same = |n: usize, s: i128| {
            let value = |q: &Requant| {
                let m = i128::from(q.multipliers[n - 1]);
                requantize(s, m, 0, q.shift, q.clamp, q.rounding)
            };
            value(&candidate) == value(r)
        };
        let agrees = domains
            .iter()
            .all(|(&n, &(lo, hi))| (lo..=hi).all(|s| same(n, s)));
        return agrees.then_some(candidate);
    }
    let counts: Vec<usize> = domains.keys().copied().collect();
    let subset = Requant {
        multipliers: counts.iter().map(|&n| r.multipliers[n - 1]).collect(),
        ..r.clone()
    };
    let domains: Vec<(i128, i128)> = domains.into_values().collect();
    let candidates = shift_candidates(&subset, &domains)?.map(|(compressed, shift)| {
        let mut multipliers: Vec<i64> = r
            .multipliers
            .iter()
            .map(|&m| heq_runtime::ring::round_shift(i128::from(m), r.shift - shift).half_even())
            .map(|m| m as i64)
            .collect();
        for (&n, m) in counts.iter().zip(compressed) {
            multipliers[n - 1] = m;
        }
        Requant {
            multipliers,
            shift,
            clamp: r.clamp,
            rounding: Rounding::HalfEven,
        }
    });
    first_kept(r.rounding, candidates, proven).filter(|c| c != r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64: a seeded source of test cases.
    struct Cases(u64);

    impl Cases {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in `lo..=hi`.
        fn range(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (self.next() % (hi - lo + 1) as u64) as i64
        }
    }

    fn requant(m: i64, k: u32, clamp: (i64, i64)) -> Requant {
        Requant {
            multipliers: vec![m],
            shift: k,
            clamp,
            rounding: Rounding::HalfEven,
        }
    }

    /// The requantization `r`'s multiplier `i` at `x`.
    fn value(r: &Requant, i: usize, x: i128) -> i128 {
        let m = i128::from(r.multipliers[i]);
        requantize(x, m, 0, r.shift, r.clamp, r.rounding)
    }

    /// `r` compressed on `domain` (itself when nothing changes), checked at every `x`.
    fn compressed_exactly(r: &Requant, domain: (i128, i128)) -> Requant {
        let domains = vec![domain; r.multipliers.len()];
        let c = compress_requant(r, &domains, |_| Rounding::HalfEven).unwrap_or_else(|| r.clone());
        assert!(c.shift <= r.shift, "{r:?} → {c:?}");
        for i in 0..r.multipliers.len() {
            for x in domain.0..=domain.1 {
                assert_eq!(value(&c, i, x), value(r, i, x), "{r:?} → {c:?} at x = {x}");
            }
        }
        c
    }

    /// Whether some multiplier in `-limit..=limit` at shift `k` reproduces `r` on `domain`.
    fn any_multiplier_at(r: &Requant, k: u32, domain: (i128, i128), limit: i128) -> bool {
        (-limit..=limit).any(|m| {
            (domain.0..=domain.1)
                .all(|x| requantize(x, m, 0, k, r.clamp, Rounding::HalfEven) == value(r, 0, x))
        })
    }

    #[test]
    fn level_start_is_the_first_value_rounding_to_the_level() {
        for k in 0..6 {
            for j in -20i128..20 {
                let start = level_start(j, k);
                let round = |t: i128| round_shift_within(t, k, 0).half_even();
                assert!(round(start) >= j && round(start - 1) < j, "j {j} k {k}");
            }
        }
    }

    #[test]
    fn staircases_record_every_level_even_across_jumps() {
        // 3x clamped to [-4, 4] on [-2, 2]: -4 (clamped -6), -3, 0, 3, 4 (clamped 6).
        let s = Staircase::of(|x| (3 * x).clamp(-4, 4), (-2, 2)).expect("few levels");
        let rises = vec![
            (-3, -1),
            (-2, 0),
            (-1, 0),
            (0, 0),
            (1, 1),
            (2, 1),
            (3, 1),
            (4, 2),
        ];
        assert_eq!((s.first, s.last, s.rises), (-4, 4, rises));
        assert_eq!(Staircase::of(|x| x, (0, 1 << 21)), None);
    }

    #[test]
    fn pool_sums_per_count_are_the_hulls_of_their_windows() {
        use heq_runtime::plan::PoolShape;
        // 3x3 windows, stride 1, padding 1, over 4x4: corners count 4, edges 6, inside 9.
        let pool = PoolShape {
            channels: 1,
            in_hw: [4, 4],
            kernel: [3, 3],
            stride: [1, 1],
            pads: [1, 1, 1, 1],
        };
        let mut spec = AvgPoolSpec {
            pool,
            count_include_pad: false,
            requant: requant(1, 0, (-8, 7)),
            ceil_pads: [0, 0],
        };
        let sums = pool_sum_domains(&spec, (-8, 7));
        let want = [(4, (-32, 28)), (6, (-48, 42)), (9, (-72, 63))];
        assert_eq!(sums.into_iter().collect::<Vec<_>>(), want);
        // Counting the padding, every window counts 9 but sums 4, 6 or 9 elements.
        spec.count_include_pad = true;
        let sums = pool_sum_domains(&spec, (-8, 7));
        assert_eq!(sums.into_iter().collect::<Vec<_>>(), [(9, (-72, 63))]);
    }

    #[test]
    fn random_requantizations_compress_exactly_and_minimally() {
        let mut cases = Cases(14);
        for case in 0..400 {
            let k = cases.range(0, 12) as u32;
            let m = cases.range(-(1 << 10), 1 << 10);
            let lo = cases.range(-40, 10);
            let clamp = (lo, lo + cases.range(0, 60));
            let x0 = cases.range(-300, 300);
            let domain = (i128::from(x0), i128::from(x0 + cases.range(0, 300)));
            let r = requant(m, k, clamp);
            let c = compressed_exactly(&r, domain);
            // Minimal: no multiplier below 2^(k+1) in magnitude works one shift lower (a
            // multiplier of 2^(k+1) or more moves every nonzero x past a whole level).
            if case % 4 == 0 && c.shift > 0 {
                let limit = 1i128 << (c.shift + 1);
                assert!(
                    !any_multiplier_at(&r, c.shift - 1, domain, limit),
                    "{r:?} on {domain:?}: {c:?} is not the smallest shift"
                );
            }
        }
    }

    #[test]
    fn hand_computed_shifts() {
        // x·3/4 on [0, 4]: 0, 1, 2 (1.5 ties to 2), 2, 3. At k = 1, m = 1 gives round(0.5) = 0
        // and m = 2 gives 3 at x = 3: the shift stays 2.
        let r = requant(3, 2, (-128, 127));
        assert_eq!(compressed_exactly(&r, (0, 4)), r);
        // On [0, 2] the outputs are x itself.
        assert_eq!(
            compressed_exactly(&r, (0, 2)),
            Requant {
                multipliers: vec![1],
                shift: 0,
                ..r.clone()
            }
        );
        // A power of two keeps its ties: round(x / 2^14) exactly, at any width.
        let c = compressed_exactly(&requant(1 << 23, 37, (-8, 7)), (-(1 << 17), 1 << 17));
        assert_eq!((c.multipliers, c.shift), (vec![1], 14));
        // The average of four at the same scale: round(x / 4), ties to even.
        let c = compressed_exactly(&requant(1 << 23, 25, (0, 255)), (0, 1020));
        assert_eq!((c.multipliers, c.shift), (vec![1], 2));
        // Negative multipliers mirror: −x/4.
        let c = compressed_exactly(&requant(-(1 << 23), 25, (-128, 127)), (-300, 300));
        assert_eq!((c.multipliers, c.shift), (vec![-1], 2));
    }

    #[test]
    fn saturated_and_tiny_domains() {
        // Every value clamps to 127: x itself already reaches it.
        let c = compressed_exactly(&requant(1 << 20, 10, (-128, 127)), (1000, 2000));
        assert_eq!((c.multipliers, c.shift), (vec![1], 0));
        // Every value clamps to 0 from below: the multiplier 0 gives clamp(0).
        let c = compressed_exactly(&requant(12_345, 20, (0, 15)), (-5000, 0));
        assert_eq!((c.multipliers, c.shift), (vec![0], 0));
        // One point: 300·12345 / 2^20 ≈ 3.53 rounds to 4, which needs m / 2^k in
        // [3.5/300, 4.5/300) = [0.01167, 0.015): first at k = 8 (m = 3; k = 7 would need m in
        // [1.49, 1.92)).
        let c = compressed_exactly(&requant(12_345, 20, (-128, 127)), (300, 300));
        assert_eq!((c.multipliers, c.shift), (vec![3], 8));
        // A 24-bit multiplier over a wide domain and few levels.
        let r = requant(0xB5_0001, 30, (0, 15));
        compressed_exactly(&r, (-(1 << 14), 1 << 14));
    }

    #[test]
    fn a_tie_free_requantization_stays_tie_free() {
        // |x| < 2^19 with an odd multiplier: no tie once the shift exceeds 20 bits.
        let x = (1i128 << 19) - 1;
        let proven = |c: &Requant| crate::analysis::ties::single_term(&c.multipliers, c.shift, x);
        let tie_free = Requant {
            rounding: Rounding::NoTies,
            ..requant(0xB5_0001, 30, (0, 15))
        };
        // The smallest shift is 14 (m = 181, the only one there); at 20 and 21 the only
        // multipliers are 181·2^6 and 181·2^7, whose factors of two leave ties possible: the
        // first odd one comes at 22.
        let c = compress_requant(&tie_free, &[(-x, x)], proven).expect("compresses");
        assert_eq!((c.shift, c.rounding), (22, Rounding::NoTies));
        assert_eq!(c.multipliers[0] % 2, 1);
        // Without the tie proof to keep, the shift goes down to 14 and ties become possible.
        let plain = requant(0xB5_0001, 30, (0, 15));
        let c = compress_requant(&plain, &[(-x, x)], proven).expect("compresses");
        assert_eq!(
            (c.multipliers, c.shift, c.rounding),
            (vec![181], 14, Rounding::HalfEven)
        );
        for r in [&tie_free, &plain] {
            let c = compress_requant(r, &[(-x, x)], proven).expect("compresses");
            for v in -x..=x {
                assert_eq!(value(&c, 0, v), value(r, 0, v), "x = {v}");
            }
        }
    }

    #[test]
    fn several_multipliers_share_the_largest_smallest_shift() {
        // x/2 needs shift 1, x·3/8 shift 3 on this domain; the first becomes 4/8.
        let r = Requant {
            multipliers: vec![1 << 22, 3 << 20],
            shift: 23,
            clamp: (-128, 127),
            rounding: Rounding::HalfEven,
        };
        let c = compressed_exactly(&r, (-100, 100));
        assert_eq!((c.multipliers, c.shift), (vec![4, 3], 3));
    }

    /// The add `a` at `(x, y)`.
    fn add_value(a: &AddSpec, x: i128, y: i128) -> i128 {
        requantize(
            x,
            i128::from(a.m_a),
            y * i128::from(a.m_b),
            a.shift,
            a.clamp,
            a.rounding,
        )
    }

    #[test]
    fn random_adds_compress_exactly() {
        let mut cases = Cases(7);
        let mut compressed = 0;
        for _ in 0..150 {
            let k = cases.range(4, 24) as u32;
            let spec = AddSpec {
                m_a: cases.range(-(1 << k), 1 << k),
                m_b: cases.range(-(1 << k), 1 << k),
                shift: k,
                clamp: (cases.range(-20, 0), cases.range(0, 20)),
                rounding: Rounding::HalfEven,
            };
            let ra = (
                i128::from(cases.range(-20, 0)),
                i128::from(cases.range(0, 20)),
            );
            let rb = (
                i128::from(cases.range(-30, 5)),
                i128::from(cases.range(5, 30)),
            );
            let Some(c) = compress_add(&spec, ra, rb, |_| Rounding::HalfEven) else {
                continue;
            };
            compressed += 1;
            assert!(c.shift < spec.shift);
            for x in ra.0..=ra.1 {
                for y in rb.0..=rb.1 {
                    assert_eq!(
                        add_value(&c, x, y),
                        add_value(&spec, x, y),
                        "{spec:?} → {c:?}"
                    );
                }
            }
        }
        assert!(compressed > 100, "only {compressed} adds compressed");
    }

    #[test]
    fn an_add_at_equal_scales_is_a_plain_sum() {
        let spec = AddSpec {
            m_a: 1 << 23,
            m_b: 1 << 23,
            shift: 23,
            clamp: (0, 15),
            rounding: Rounding::HalfEven,
        };
        let c = compress_add(&spec, (0, 15), (-8, 7), |_| Rounding::HalfEven).expect("compresses");
        assert_eq!((c.m_a, c.m_b, c.shift), (1, 1, 0));
        // Half of a sum keeps its ties to even: (a + b) / 2.
        let half = AddSpec {
            m_a: 1 << 22,
            m_b: 1 << 22,
            ..spec
        };
        let c = compress_add(&half, (0, 15), (0, 15), |_| Rounding::HalfEven).expect("compresses");
        assert_eq!((c.m_a, c.m_b, c.shift), (1, 1, 1));
        // Too many pairs: unchanged.
        assert_eq!(
            compress_add(&spec, (0, 1 << 12), (0, 1 << 12), |_| Rounding::HalfEven),
            None
        );
    }
}
