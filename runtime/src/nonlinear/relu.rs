//! ReLU and clamps on shares in `Z_{2^l}` (CrypTFlow2 DReLU + MUX): the DReLU bit of
//! [`super::carry`], then the multiplexer [`mux`].
//!
//! A clamp to `[lo, hi]` compares only on the sides the plan's value range lets bind:
//! `y = lo + d1·(x − lo) − d2·(x − hi)` with `d1 = [x ≥ lo]`, `d2 = [x > hi]`. Costs:
//! [`crate::cost::nonlinear::relu`], [`ClampPlan::cost`].

use super::carry::drelu;
use super::cot::mux;
use super::{ProtocolError, Session};
use crate::params::nonlinear::ClampPlan;
use crate::ring::Ring;

/// ReLU `max(x, 0)` of shared signed values in `ring`, with no range information.
///
/// # Errors
/// [`ProtocolError`] on exhausted OT pads or channel failure.
pub fn relu(s: &mut Session<'_>, ring: Ring, x: &[u64]) -> Result<Vec<u64>, ProtocolError> {
    let d = drelu(s, ring, x)?;
    mux(s, ring, &d, x)
}

/// [`relu`] with the carry-select comparison: `block + 1 + 2·⌈log2((l−1)/block)⌉ + 2` rounds
/// instead of `l + 2`, about 1.8× the bytes. Cost:
/// [`crate::cost::nonlinear::relu_blocked`].
///
/// # Errors
/// [`ProtocolError`] on exhausted OT pads or channel failure.
pub fn relu_blocked(
    s: &mut Session<'_>,
    ring: Ring,
    x: &[u64],
    block: u32,
) -> Result<Vec<u64>, ProtocolError> {
    let d = super::carry::drelu_blocked(s, ring, x, block)?;
    mux(s, ring, &d, x)
}

/// Clamp of shared values to the plan's `[lo, hi]` (ReLU: `lo = 0`; clipped ReLU: `[0, hi]`),
/// comparing only on the sides that can bind.
///
/// # Errors
/// [`ProtocolError`] on exhausted OT pads or channel failure.
pub fn clamp(s: &mut Session<'_>, plan: &ClampPlan, x: &[u64]) -> Result<Vec<u64>, ProtocolError> {
    let ring = Ring::new(plan.ring_bits);
    let n = x.len();
    let server = s.is_server();
    // A public constant enters the server's share only.
    let konst = |c: i128| {
        if server {
            ring.from_signed(c as i64)
        } else {
            0
        }
    };
    let (lo, hi) = plan.clamp;
    let t: Vec<u64> = x.iter().map(|&v| ring.sub(v, konst(lo))).collect();
    let over: Vec<u64> = x.iter().map(|&v| ring.sub(v, konst(hi))).collect();
    let mut cmp = Vec::with_capacity(n * plan.sides() as usize);
    let mut vals = Vec::with_capacity(cmp.capacity());
    if plan.lower {
        cmp.extend_from_slice(&t);
        vals.extend_from_slice(&t);
    }
    if plan.upper {
        cmp.extend(over.iter().map(|&v| ring.sub(v, konst(1))));
        vals.extend_from_slice(&over);
    }
    if cmp.is_empty() {
        return Ok(x.to_vec());
    }
    let d = drelu(s, ring, &cmp)?;
    let m = mux(s, ring, &d, &vals)?;
    let (low_part, high_part) = m.split_at(if plan.lower { n } else { 0 });
    Ok((0..n)
        .map(|i| {
            let base = if plan.lower {
                ring.add(konst(lo), low_part[i])
            } else {
                x[i]
            };
            if plan.upper {
                ring.sub(base, high_part[i])
            } else {
                base
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::nonlinear as cost;
    use crate::nonlinear::testutil::{open, run, share, values};

    #[test]
    fn relu_exact_widths() {
        for l in [2u32, 4, 9, 16, 37, 45] {
            let ring = Ring::new(l);
            let half = 1i128 << (l - 1);
            let v = values(-half, half - 1, 400, u64::from(l));
            let (xs, xc) = share(ring, &v, 11);
            let (a, b) = run(cost::relu(400, l), move |s| {
                relu(s, ring, if s.is_server() { &xs } else { &xc })
            });
            let got = open(ring, &a, &b);
            for i in 0..v.len() {
                assert_eq!(got[i], v[i].max(0), "l {l}");
            }
        }
    }

    #[test]
    fn relu_blocked_exact() {
        for (l, block) in [(37u32, 6u32), (16, 4), (5, 2)] {
            let ring = Ring::new(l);
            let half = 1i128 << (l - 1);
            let v = values(-half, half - 1, 400, u64::from(l));
            let (xs, xc) = share(ring, &v, 21);
            let (a, b) = run(cost::relu_blocked(400, l, block), move |s| {
                relu_blocked(s, ring, if s.is_server() { &xs } else { &xc }, block)
            });
            let got = open(ring, &a, &b);
            for i in 0..v.len() {
                assert_eq!(got[i], v[i].max(0), "l {l}");
            }
        }
    }

    #[test]
    fn clamp_sides() {
        let ring = Ring::new(11);
        let v = values(-300, 300, 300, 8);
        for (clamp_to, sides) in [
            ((0, 255), 2u64),
            ((-7, 400), 1),
            ((-400, 6), 1),
            ((-300, 300), 0),
            ((0, 0), 2),
        ] {
            let plan = ClampPlan::new(11, (-300, 300), clamp_to).expect("plan");
            assert_eq!(plan.sides(), sides);
            let (xs, xc) = share(ring, &v, 9);
            let (a, b) = run(plan.cost(300), move |s| {
                clamp(s, &plan, if s.is_server() { &xs } else { &xc })
            });
            let got = open(ring, &a, &b);
            for i in 0..v.len() {
                assert_eq!(got[i], v[i].clamp(clamp_to.0, clamp_to.1), "{clamp_to:?}");
            }
        }
        assert!(ClampPlan::new(11, (-300, 300), (1000, 1010)).is_err());
        assert!(ClampPlan::new(10, (-300, 300), (0, 255)).is_err());
    }
}
