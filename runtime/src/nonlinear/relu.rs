//! ReLU and clamps on shares in `Z_{2^l}` (CrypTFlow2 DReLU + MUX): the DReLU bit of
//! [`super::carry`], then the multiplexer [`mux`].
//!
//! A clamp to `[lo, hi]` ([`ClampPlan`]) compares only on the sides the plan's value range lets
//! bind, `d1 = [x ≥ t1]` and `d2 = [x ≥ t2]` (`t1 ∈ {lo, lo + 1}`, `t2 ∈ {hi, hi + 1}`), and
//! selects in the output ring, which may be narrower than the comparison ring:
//!
//! - lower side only: `y = lo + d1·(x − lo)`, one DReLU and one [`mux`];
//! - upper side only: `y = x − d2·(x − hi)`, the same;
//! - both sides: the two DReLUs of `x − t1` and `x − t2` differ only by the public `t2 − t1` in
//!   the server's share, so they run as one [`drelu_pair`]: one chain for the low `v2(t2 − t1)`
//!   bits, a local carry at the next bit, and above it a second chain that shares the first's
//!   client-choice OTs. As `d2` implies `d1`, `y = lo + (d1 ⊕ d2)·(x − lo) + d2·(hi − lo)`:
//!   one multiplexer plus one correlated OT for the public multiple of `d2` ([`mux_plus`]),
//!   instead of two multiplexers.
//!
//! For the usual clamp to a `b`-bit type (`hi − lo + 1 = 2^b`) in an `l`-bit comparison ring,
//! the second chain has `l − b − 2` bits of its own: none in the tightest ring where both sides
//! can bind (`l = b + 2`, so that `x − lo` and `x − hi − 1` are both signed values), where both
//! comparisons cost one DReLU. Costs: [`crate::cost::nonlinear::relu`], [`ClampPlan::cost`].

use super::carry::{drelu, drelu_pair};
use super::cot::{mux, mux_plus};
use super::{ProtocolError, Session};
use crate::params::nonlinear::ClampPlan;
use crate::plan::CarryDepth;
use crate::ring::Ring;

/// ReLU `max(x, 0)` of shared signed values in `ring`, with no range information, its
/// comparison at `depth`.
///
/// # Errors
/// [`ProtocolError`] on exhausted OT pads or channel failure.
pub fn relu(
    s: &mut Session<'_>,
    ring: Ring,
    x: &[u64],
    depth: CarryDepth,
) -> Result<Vec<u64>, ProtocolError> {
    let d = drelu(s, ring, x, depth)?;
    mux(s, ring, &d, x)
}

/// Clamp of shared values in the plan's comparison ring to the plan's `[lo, hi]` (ReLU:
/// `lo = 0`; clipped ReLU: `[0, hi]`), comparing only on the sides that can bind; the result is
/// in the plan's output ring.
///
/// # Errors
/// [`ProtocolError`] on exhausted OT pads or channel failure.
pub fn clamp(s: &mut Session<'_>, plan: &ClampPlan, x: &[u64]) -> Result<Vec<u64>, ProtocolError> {
    let (ring, out) = (Ring::new(plan.ring_bits), Ring::new(plan.out_bits));
    let server = s.is_server();
    // A public constant enters the server's share only.
    let konst = |r: Ring, c: i128| if server { r.from_signed(c as i64) } else { 0 };
    let minus =
        |r: Ring, c: i128| -> Vec<u64> { x.iter().map(|&v| r.sub(v, konst(r, c))).collect() };
    let (lo, hi) = plan.clamp;
    let (t1, t2) = plan.thresholds;
    let y = match (plan.lower, plan.upper) {
        (false, false) => x.iter().map(|&v| out.reduce(v)).collect(),
        (true, false) => {
            let d1 = drelu(s, ring, &minus(ring, t1), plan.depth)?;
            let m = mux(s, out, &d1, &minus(out, lo))?;
            m.into_iter().map(|v| out.add(v, konst(out, lo))).collect()
        }
        (false, true) => {
            let d2 = drelu(s, ring, &minus(ring, t2), plan.depth)?;
            let m = mux(s, out, &d2, &minus(out, hi))?;
            x.iter().zip(m).map(|(&v, m)| out.sub(v, m)).collect()
        }
        (true, true) => {
            let (d1, d2) = drelu_pair(s, ring, &minus(ring, t1), plan.gap(), plan.depth)?;
            let inside: Vec<bool> = d1.iter().zip(&d2).map(|(&a, &b)| a ^ b).collect();
            let k = (hi - lo) as u64;
            let m = mux_plus(s, out, &inside, &minus(out, lo), &d2, k)?;
            m.into_iter().map(|v| out.add(v, konst(out, lo))).collect()
        }
    };
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::nonlinear as cost;
    use crate::nonlinear::testutil::{open, run, share, values};
    use crate::params::nonlinear::signed_bits;

    #[test]
    fn relu_exact_widths_and_depths() {
        for l in [2u32, 4, 9, 16, 37, 45] {
            for depth in [CarryDepth::Ripple, CarryDepth::Tree] {
                let ring = Ring::new(l);
                let half = 1i128 << (l - 1);
                let v = values(-half, half - 1, 400, u64::from(l));
                let (xs, xc) = share(ring, &v, 11);
                let (a, b) = run(cost::relu(400, l, depth), move |s| {
                    relu(s, ring, if s.is_server() { &xs } else { &xc }, depth)
                });
                let got = open(ring, &a, &b);
                for i in 0..v.len() {
                    assert_eq!(got[i], v[i].max(0), "l {l} {depth}");
                }
            }
        }
        // 36 bits: 6 rounds of the tree (9 digits) against 37 of the chain, then the
        // multiplexer's one.
        assert_eq!(cost::relu(1, 37, CarryDepth::Tree).rounds, 7);
        assert_eq!(cost::relu(1, 37, CarryDepth::Ripple).rounds, 38);
    }

    /// Runs `plans` one after the other on `inputs[i]` (signed values) in one session, with the
    /// plans' summed cost asserted; returns the opened outputs.
    fn run_clamps(plans: &[ClampPlan], inputs: &[Vec<(u64, u64)>]) -> Vec<Vec<i128>> {
        let total = plans
            .iter()
            .zip(inputs)
            .fold(cost::Cost::default(), |c, (p, v)| {
                c + p.cost(v.len() as u64)
            });
        let (owned, inputs) = (plans.to_vec(), inputs.to_vec());
        let (a, b) = run(total, move |s| {
            owned
                .iter()
                .zip(&inputs)
                .map(|(p, v)| {
                    let mine: Vec<u64> = v
                        .iter()
                        .map(|&(xs, xc)| if s.is_server() { xs } else { xc })
                        .collect();
                    clamp(s, p, &mine)
                })
                .collect::<Result<Vec<_>, _>>()
        });
        a.iter()
            .zip(&b)
            .zip(plans)
            .map(|((a, b), p)| open(Ring::new(p.out_bits), a, b))
            .collect()
    }

    /// Every value of the range, each under every mask (`ring_bits ≤ 4`) or under 3 masks.
    fn shares_of_range(ring: Ring, range: (i128, i128), seed: u64) -> Vec<(u64, u64)> {
        let every = ring.bits() <= 4;
        let masks: Vec<u64> = if every {
            (0..1u64 << ring.bits()).collect()
        } else {
            let m = ring.mask();
            (0..3u64)
                .map(|i| {
                    (seed ^ i)
                        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                        .rotate_left(17)
                        & m
                })
                .collect()
        };
        (range.0..=range.1)
            .flat_map(|v| masks.iter().map(move |&m| (v, m)))
            .map(|(v, m)| (ring.sub(ring.from_signed(v as i64), m), m))
            .collect()
    }

    /// Every clamp `[lo, hi]` of rings of 3 to 6 bits, over every value of the widest range the
    /// plan allows and of ranges binding only one side, into the smallest output ring and into
    /// the comparison ring: `hi − lo + 1` a power of two, odd, even, `lo = hi`, ReLU `[0, hi]`.
    #[test]
    fn clamp_exhaustive_small_rings() {
        let mut both = 0;
        for l in 3u32..=6 {
            let ring = Ring::new(l);
            let half = 1i128 << (l - 1);
            for lo in -half..half {
                for hi in lo..half {
                    // The widest range in which `x − lo` and `x − hi − 1` are signed values.
                    let wide = ((hi + 1 - half).max(-half), (lo + half - 1).min(half - 1));
                    let ranges = [wide, (lo, wide.1), (wide.0, hi)];
                    let mut plans = Vec::new();
                    let mut inputs = Vec::new();
                    for (j, range) in ranges.into_iter().enumerate() {
                        if range.0 > range.1 {
                            continue;
                        }
                        let out_bits = if (lo + hi + j as i128) % 2 == 0 {
                            l
                        } else {
                            signed_bits((lo, hi))
                        };
                        let plan = ClampPlan::new(l, range, (lo, hi), out_bits).expect("plan");
                        both += usize::from(plan.sides() == 2);
                        let input = shares_of_range(ring, range, (lo * 64 + hi) as u64);
                        let tree = ClampPlan {
                            depth: CarryDepth::Tree,
                            ..plan
                        };
                        inputs.extend([input.clone(), input]);
                        plans.extend([plan, tree]);
                    }
                    let got = run_clamps(&plans, &inputs);
                    for ((plan, input), got) in plans.iter().zip(&inputs).zip(got) {
                        let values = input.iter().map(|&(a, b)| ring.to_signed(ring.add(a, b)));
                        for (v, y) in values.zip(got) {
                            assert_eq!(y, i128::from(v).clamp(lo, hi), "{plan:?} x {v}");
                        }
                    }
                }
            }
        }
        assert_eq!(both, 1894);
    }

    #[test]
    fn clamp_thresholds_and_costs() {
        use CarryDepth::{Ripple, Tree};
        let n = 100;
        // hi − lo + 1 = 16 in the tightest ring (6 bits): one chain for both sides.
        let p = ClampPlan::new(6, (-16, 31), (0, 15), 5).expect("plan");
        assert_eq!((p.sides(), p.thresholds), (2, (0, 16)));
        assert_eq!(p.cost(n), cost::msb(n, 6, Ripple) + cost::mux_plus(n, 5));
        // The twin's top bit is local in the tree too.
        let t = ClampPlan { depth: Tree, ..p };
        assert_eq!(t.cost(n), cost::msb(n, 6, Tree) + cost::mux_plus(n, 5));
        // hi − lo + 1 = 7 (odd): thresholds 6 apart share one bit.
        let p = ClampPlan::new(5, (-9, 14), (0, 6), 4).expect("plan");
        assert_eq!(p.thresholds, (1, 7));
        assert_eq!(
            p.cost(n),
            cost::msb_pair(n, 5, 6, Ripple) + cost::mux_plus(n, 4)
        );
        // lo = hi: thresholds 1 apart, the output is lo.
        let p = ClampPlan::new(5, (-12, 15), (3, 3), 3).expect("plan");
        assert_eq!(p.thresholds, (3, 4));
        // One side: one DReLU in the comparison ring, one multiplexer in the output ring.
        let p = ClampPlan::new(11, (-300, 300), (0, 400), 10).expect("plan");
        assert_eq!((p.lower, p.upper), (true, false));
        assert_eq!(p.cost(n), cost::msb(n, 11, Ripple) + cost::mux(n, 10));
        // The joint clamp beats two comparisons and two multiplexers in bytes and ROTs, with the
        // rounds of one.
        let p = ClampPlan::new(11, (-300, 300), (0, 255), 9).expect("plan");
        let (joint, separate) = (p.cost(n), cost::relu(2 * n, 11, Ripple));
        assert!(joint.total_bytes() < separate.total_bytes());
        assert!(
            joint.server_rots + joint.client_rots < separate.server_rots + separate.client_rots
        );
        assert_eq!(joint.rounds, separate.rounds);
        assert!(ClampPlan::new(11, (-300, 300), (1000, 1010), 11).is_err());
        assert!(ClampPlan::new(10, (-300, 300), (0, 255), 10).is_err());
        assert!(ClampPlan::new(11, (-300, 300), (0, 255), 8).is_err());
        assert!(ClampPlan::new(11, (-300, 300), (0, 255), 12).is_err());
    }
}
