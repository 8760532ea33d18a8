//! Multiplexer, ReLU and clamps on shares in `Z_{2^l}` (CrypTFlow2 DReLU + MUX).
//!
//! The multiplexer `d·x` (`d = d0 ⊕ d1`, `x = x0 + x1`) is two correlated OTs: each party sends
//! its share of `x` correlated by `Δ = (1 − 2·d_own)·x_own` to the other's choice `d_other`, and
//! `d·x = d0 x0 + d1 x1 + d1·Δ_0 + d0·Δ_1`. A clamp to `[lo, hi]` compares only on the sides the
//! plan's value range lets bind: `y = lo + d1·(x − lo) − d2·(x − hi)` with `d1 = [x ≥ lo]`,
//! `d2 = [x > hi]`. Costs: [`crate::cost::nonlinear::mux`], [`ClampPlan::cost`].

use super::carry::drelu;
use super::cot::{CotReceiver, CotSender};
use super::{BitWriter, ProtocolError, Session, check_len};
use crate::cost::nonlinear::ClampPlan;
use crate::ring::Ring;

/// Shares of `d·x` in `ring` from XOR shares of `d` and shares of `x` in `ring`.
///
/// # Errors
/// [`ProtocolError`] on length mismatch, exhausted OT pads or channel failure.
pub fn mux(
    s: &mut Session<'_>,
    ring: Ring,
    d: &[bool],
    x: &[u64],
) -> Result<Vec<u64>, ProtocolError> {
    let n = x.len();
    check_len(d.len(), n)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let w = ring.bits();
    let mut send = CotSender::take(s, n)?;
    let mut msg = BitWriter::new();
    let recv = CotReceiver::start(s, d.to_vec(), &mut msg)?;
    let mut r = s.round(msg, n as u64)?;
    send.read_corrections(&mut r);
    let deltas: Vec<u64> = d
        .iter()
        .zip(x)
        .map(|(&di, &xi)| if di { ring.neg(xi) } else { xi })
        .collect();
    let mut msg = BitWriter::new();
    let sent = send.respond(0, &deltas, w, &mut msg);
    let mut r = s.round(msg, n as u64 * u64::from(w))?;
    let got = recv.finish(0, n, w, &mut r);
    Ok((0..n)
        .map(|i| ring.add(ring.add(if d[i] { x[i] } else { 0 }, sent[i]), got[i]))
        .collect())
}

/// ReLU `max(x, 0)` of shared signed values in `ring`, with no range information.
///
/// # Errors
/// As [`mux`].
pub fn relu(s: &mut Session<'_>, ring: Ring, x: &[u64]) -> Result<Vec<u64>, ProtocolError> {
    let d = drelu(s, ring, x)?;
    mux(s, ring, &d, x)
}

/// [`relu`] with the carry-select comparison: `block + 1 + 2·⌈log2((l−1)/block)⌉ + 2` rounds
/// instead of `l + 2`, about 1.8× the bytes. Cost:
/// [`crate::cost::nonlinear::relu_blocked`].
///
/// # Errors
/// As [`mux`].
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
/// As [`mux`].
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
    fn mux_exact() {
        let ring = Ring::new(13);
        let v = values(-4096, 4095, 200, 3);
        let d: Vec<bool> = (0..200).map(|i| i % 3 == 0).collect();
        let (xs, xc) = share(ring, &v, 4);
        let split: Vec<bool> = (0..200).map(|i| i % 5 < 2).collect();
        let (ds, dc): (Vec<bool>, Vec<bool>) =
            d.iter().zip(&split).map(|(&a, &r)| (a ^ r, r)).unzip();
        let (a, b) = run(cost::mux(200, 13), move |s| {
            if s.is_server() {
                mux(s, ring, &ds, &xs)
            } else {
                mux(s, ring, &dc, &xc)
            }
        });
        let got = open(ring, &a, &b);
        for i in 0..200 {
            assert_eq!(got[i], if d[i] { v[i] } else { 0 });
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
