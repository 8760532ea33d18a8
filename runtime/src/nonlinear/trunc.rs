//! Exact rescaling `y = round(x / 2^k)` from `Z_{2^l}` to `Z_{2^R}` (SiRNN-style): truncation
//! with rounding, its cheap known-MSB variant, truncate-and-reduce and signed or unsigned
//! bit-width extension (`k = 0`).
//!
//! The server adds `2^(k−1) + offset` so that the value `Y` is an integer in `[0, 2^l)`; with
//! `Y_i = H_i·2^k + lo_i`, `y = H0 + H1 + c − w·2^(l−k) − offset/2^k` where `c` is the carry of
//! `lo0 + lo1` (a carry chain on `k` bits) and `w` the wrap of `Y0 + Y1`. The wrap vanishes in a
//! ring of at most `l − k` bits (truncate-and-reduce). When the plan's range puts `Y` below
//! `2^(l−1)` (MSB known to be 0), `w = m0 ∨ m1` of the shares' MSBs: one correlated OT instead of
//! a chain over all `l` bits. `c` and `w` become arithmetic by one correlated OT each (B2A).
//!
//! This computes `floor((x + 2^(k−1)) / 2^k)` (half up). Ties to even subtract
//! `d = tie ∧ odd(y)`: `tie` (the low `k` bits of `Y` are zero) is `c ⊕ c' ⊕ [lo0 = 0]` with `c'`
//! the carry of `(lo0 − 1 mod 2^k) + lo1` (a second chain), `odd(y)` is local given `c`, and the
//! AND is one multiplexer over `Z_2`. With a tie window `w`
//! ([`Rounding::HalfEvenWithin`](crate::plan::Rounding::HalfEvenWithin)) the server adds
//! `2^(k−1) + w`, so every remainder in the window rounds up, and a tie is `lo ≤ 2w`:
//! `c ⊕ c' ⊕ [lo0 ≤ 2w]` with `c'` the carry of `(lo0 − 1 − 2w mod 2^k) + lo1`, at the same cost.
//! Where the main chain is the `k`-bit one, the two chains are one
//! [`carry_pair`](super::carry::carry_pair) (the server's summands `1 + 2w` apart), in the
//! rounds of one chain.
//!
//! Faithful truncation ([`Rounding::Faithful`](crate::plan::Rounding::Faithful), opt-in) adds
//! `2^k − 1 + offset` and leaves `c` out: `y = ⌈x / 2^k⌉ − c ∈ {⌊x / 2^k⌋, ⌈x / 2^k⌉}`, no
//! chain on the low bits and no tie test; only the wrap is computed (exactly as above), and
//! truncate-and-reduce becomes local. Plan and cost: [`RescalePlan`].

use super::carry::{carries, carry_pair};
use super::cot::{client_cots, mask, mux};
use super::{ProtocolError, Session};
use crate::params::nonlinear::{RescalePlan, WrapMode};
use crate::ring::Ring;

/// Runs a [`RescalePlan`] on shares `x` in `Z_{2^l}`; returns shares in `Z_{2^R}`.
///
/// # Errors
/// [`ProtocolError`] on exhausted OT pads or channel failure.
pub fn rescale(
    s: &mut Session<'_>,
    plan: &RescalePlan,
    x: &[u64],
) -> Result<Vec<u64>, ProtocolError> {
    let (l, k, r) = (plan.in_bits, plan.shift, plan.out_bits);
    let (in_ring, out_ring) = (Ring::new(l), Ring::new(r));
    let server = s.is_server();
    let half = plan.rounding_offset();
    let y: Vec<u64> = x
        .iter()
        .map(|&v| {
            if server {
                in_ring.add(v, in_ring.reduce(half.wrapping_add(plan.offset)))
            } else {
                v
            }
        })
        .collect();
    let len = plan.chain_len();
    let positions = plan.carry_positions();
    let low: Vec<u64> = y.iter().map(|&v| v & mask(len)).collect();
    // When both chains have length k, the tie test's sum `(lo0 − 1 − 2w) + lo1` is the main
    // sum's with the server's summand `1 + 2w` lower: one carry pair, in the rounds of one chain.
    let (bits, tie_carry) = if plan.tie_test_fused() {
        let (c, c2) = carry_pair(s, &low, k, plan.tie_distance(), plan.depth)?;
        (vec![c], Some(c2))
    } else if plan.tie_test() {
        let bits = carries(s, &low, len, &positions, plan.depth)?;
        let inputs = tie_inputs(s.is_server(), &y, plan);
        let c2 = carries(s, &inputs, k, &[k - 1], plan.depth)?
            .pop()
            .unwrap_or_default();
        (bits, Some(c2))
    } else {
        (carries(s, &low, len, &positions, plan.depth)?, None)
    };
    let carry = if plan.low_carry() { bits.first() } else { None };
    let ties = match (carry, tie_carry) {
        (Some(c), Some(c2)) => Some(tie_correction(s, plan, &y, c, &c2)?),
        _ => None,
    };
    let wrap_bits = plan.wrap_bits();
    let wrap_share = |i: usize| match plan.wrap {
        WrapMode::Chain => bits.last().is_some_and(|w| w[i]),
        _ => in_ring.msb(y[i]),
    };
    // One B2A per needed bit: client choices are its bits, server correlations −2·b0 (B2A) or m0
    // (the AND of the two MSBs).
    let mut choices = Vec::new();
    let mut deltas = Vec::new();
    let mut widths = Vec::new();
    for i in 0..y.len() {
        if let Some(c) = carry {
            choices.push(c[i]);
            deltas.push(out_ring.neg(2 * u64::from(c[i])));
            widths.push(r);
        }
        if let Some(d) = &ties {
            choices.push(d[i] == 1);
            deltas.push(out_ring.neg(2 * d[i]));
            widths.push(r);
        }
        if plan.wrap != WrapMode::None {
            let b = wrap_share(i);
            choices.push(b);
            let wm = mask(wrap_bits);
            deltas.push(if plan.wrap == WrapMode::Chain {
                (2 * u64::from(b)).wrapping_neg() & wm
            } else {
                u64::from(b)
            });
            widths.push(wrap_bits);
        }
    }
    let (choices, deltas) = if server {
        (Vec::new(), deltas)
    } else {
        (choices, Vec::new())
    };
    let cot = client_cots(s, &choices, &deltas, &widths)?;
    let per = widths.len().checked_div(y.len()).unwrap_or(0);
    let scale = 1u64 << (l - k);
    let offset_hi = if server { plan.offset >> k } else { 0 };
    Ok((0..y.len())
        .map(|i| {
            let mut v = out_ring.sub(out_ring.reduce(y[i] >> k), out_ring.reduce(offset_hi));
            let mut j = i * per;
            if let Some(c) = carry {
                v = out_ring.add(v, out_ring.add(u64::from(c[i]), cot[j]));
                j += 1;
            }
            if let Some(d) = &ties {
                v = out_ring.sub(v, out_ring.add(d[i], cot[j]));
                j += 1;
            }
            if plan.wrap != WrapMode::None {
                let b = u64::from(wrap_share(i));
                let w = match plan.wrap {
                    WrapMode::Chain => b.wrapping_add(cot[j]),
                    _ => b.wrapping_sub(cot[j]),
                } & mask(wrap_bits);
                v = out_ring.sub(v, out_ring.mul(w, scale));
            }
            v
        })
        .collect())
}

/// Inputs of the tie test's chain: `(lo0 − 1 − 2w) mod 2^k` on the server, `lo1` on the client
/// (`w` the tie window).
fn tie_inputs(server: bool, y: &[u64], plan: &RescalePlan) -> Vec<u64> {
    let m = mask(plan.shift);
    let below = plan.tie_distance();
    y.iter()
        .map(|&v| {
            if server {
                (v & m).wrapping_sub(below) & m
            } else {
                v & m
            }
        })
        .collect()
}

/// XOR shares of `tie ∧ odd(floor((x + 2^(k−1)) / 2^k))` from the shifted shares `y`, the carry
/// shares `c` of their low `k` bits and the carry shares `c2` of the tie test's chain.
fn tie_correction(
    s: &mut Session<'_>,
    plan: &RescalePlan,
    y: &[u64],
    c: &[bool],
    c2: &[bool],
) -> Result<Vec<u64>, ProtocolError> {
    let k = plan.shift;
    let server = s.is_server();
    let m = mask(k);
    let odd_offset = server && (plan.offset >> k) & 1 == 1;
    let window = plan.tie_distance() - 1;
    let tie: Vec<bool> = (0..y.len())
        .map(|i| c[i] ^ c2[i] ^ (server && y[i] & m <= window))
        .collect();
    let odd: Vec<u64> = (0..y.len())
        .map(|i| u64::from(((y[i] >> k) & 1 == 1) ^ c[i] ^ odd_offset))
        .collect();
    mux(s, Ring::new(1), &tie, &odd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::nonlinear::{Cost, client_cots};
    use crate::nonlinear::testutil::{
        check_faithful, every_split, open, round_shift, run, share, values, with_ties,
    };
    use crate::params::nonlinear::ParamError;
    use crate::plan::{CarryDepth, Rounding};

    fn check(l: u32, range: (i128, i128), k: u32, r: u32, expect_wrap: WrapMode) {
        check_rounding(l, range, k, r, expect_wrap, Rounding::NoTies);
        if k > 0 {
            check_rounding(l, range, k, r, expect_wrap, Rounding::HalfEven);
        }
    }

    fn check_rounding(
        l: u32,
        range: (i128, i128),
        k: u32,
        r: u32,
        expect_wrap: WrapMode,
        rounding: Rounding,
    ) {
        let mut v = values(range.0, range.1, 500, u64::from(l * 100 + k));
        with_ties(&mut v, range, k, rounding.tie_window().unwrap_or(0));
        let wrap = check_values(l, range, k, r, rounding, v);
        assert_eq!(wrap, expect_wrap, "l {l} k {k} r {r} {range:?}");
    }

    /// Rescales the values `v` on shares at both carry depths, checks every result and returns
    /// the plan's wrap mode.
    fn check_values(
        l: u32,
        range: (i128, i128),
        k: u32,
        r: u32,
        rounding: Rounding,
        v: Vec<i128>,
    ) -> WrapMode {
        let ripple = RescalePlan::new(l, range, k, r, rounding).expect("plan");
        for depth in [CarryDepth::Ripple, CarryDepth::Tree] {
            let plan = RescalePlan { depth, ..ripple };
            let (inr, outr) = (Ring::new(l), Ring::new(r));
            let (xs, xc) = share(inr, &v, u64::from(r));
            let (a, b) = run(plan.cost(v.len() as u64), move |s| {
                rescale(s, &plan, if s.is_server() { &xs } else { &xc })
            });
            let got = open(outr, &a, &b);
            for i in 0..v.len() {
                assert_eq!(
                    got[i],
                    round_shift(v[i], k, rounding),
                    "l {l} k {k} r {r} x {} {rounding:?} {depth}",
                    v[i]
                );
            }
        }
        ripple.wrap
    }

    #[test]
    fn tie_windows_round_to_even_on_every_value() {
        for (l, range, k, r, window) in [
            (10, (-500, 490), 4, 10, 1),
            (10, (-500, 490), 4, 10, 7),
            (10, (-250, 240), 5, 6, 3),
            (12, (-2000, 1900), 6, 12, 31),
            (12, (-2048, 1900), 6, 12, 20),
        ] {
            let rounding = Rounding::HalfEvenWithin(window);
            check_values(l, range, k, r, rounding, (range.0..=range.1).collect());
        }
    }

    #[test]
    fn faithful_truncation_is_floor_or_ceil_for_every_value_and_share_split() {
        let unbounded = (i128::MIN, i128::MAX);
        for (l, range, k, r, wrap) in [
            (7, (-20, 20), 3, 7, WrapMode::KnownMsb),
            (7, (-64, 55), 2, 7, WrapMode::Chain),
            (8, (-60, 60), 4, 4, WrapMode::None),
            (7, (0, 30), 5, 9, WrapMode::KnownMsb),
            (6, (-32, 31), 0, 9, WrapMode::Chain),
        ] {
            let faithful = RescalePlan::new(l, range, k, r, Rounding::Faithful).expect("plan");
            assert_eq!(faithful.wrap, wrap, "l {l} k {k} r {r}");
            let (values, xs, xc) = every_split(Ring::new(l), range);
            let n = values.len() as u64;
            // Only the wrap is computed: one correlated OT with the MSB known, none at all for
            // truncate-and-reduce.
            match wrap {
                WrapMode::None => assert_eq!(faithful.cost(n), Cost::default()),
                WrapMode::KnownMsb => assert_eq!(
                    faithful.cost(n),
                    client_cots(n, n * u64::from(faithful.wrap_bits()))
                ),
                WrapMode::Chain => {}
            }
            if k > 0 {
                let exact = RescalePlan::new(l, range, k, r, Rounding::NoTies).expect("plan");
                assert!(faithful.cost(n).total_bytes() < exact.cost(n).total_bytes());
            }
            for depth in [CarryDepth::Ripple, CarryDepth::Tree] {
                let plan = RescalePlan { depth, ..faithful };
                let (xs, xc) = (xs.clone(), xc.clone());
                let (a, b) = run(plan.cost(n), move |s| {
                    rescale(s, &plan, if s.is_server() { &xs } else { &xc })
                });
                check_faithful(&values, &open(Ring::new(r), &a, &b), l, k, unbounded);
            }
        }
    }

    #[test]
    fn tie_windows_on_wide_rings() {
        let w = Rounding::HalfEvenWithin(1000);
        check_rounding(37, (-(1 << 34), 1 << 34), 12, 37, WrapMode::KnownMsb, w);
        check_rounding(37, (-(1 << 36), 1 << 35), 12, 37, WrapMode::Chain, w);
        check_rounding(37, (-(1 << 35), 1 << 35), 12, 25, WrapMode::None, w);
    }

    #[test]
    fn a_tie_window_must_fit_the_shift() {
        for (k, window) in [(4, 8), (0, 1), (1, 1)] {
            let err = RescalePlan::new(16, (-100, 100), k, 16, Rounding::HalfEvenWithin(window));
            assert!(
                matches!(err, Err(ParamError::TieWindow { .. })),
                "k {k} w {window}: {err:?}"
            );
        }
        assert!(RescalePlan::new(16, (-100, 100), 4, 16, Rounding::HalfEvenWithin(7)).is_ok());
    }

    #[test]
    fn truncation_known_msb_and_general() {
        check(37, (-(1 << 34), 1 << 34), 12, 37, WrapMode::KnownMsb);
        check(
            37,
            (-(1 << 36), (1 << 36) - (1 << 11) - 1),
            12,
            37,
            WrapMode::Chain,
        );
        check(16, (-(1 << 15), (1 << 15) - 9), 4, 16, WrapMode::Chain);
        check(45, (-(1 << 42), 1 << 42), 20, 45, WrapMode::KnownMsb);
        // Rounding ties: multiples of 2^(k-1).
        check(10, (-512, 503), 4, 10, WrapMode::Chain);
        check(10, (-256, 247), 4, 10, WrapMode::KnownMsb);
    }

    #[test]
    fn truncate_and_reduce() {
        check(16, (-(1 << 14), (1 << 14) - 1), 10, 6, WrapMode::None);
        check(37, (-(1 << 35), 1 << 35), 12, 25, WrapMode::None);
        check(20, (-(1 << 19), (1 << 19) - 513), 10, 10, WrapMode::None);
    }

    #[test]
    fn extension_signed_and_unsigned() {
        check(4, (-8, 7), 0, 16, WrapMode::Chain);
        check(5, (-8, 7), 0, 37, WrapMode::KnownMsb);
        check(4, (0, 15), 0, 9, WrapMode::Chain);
        check(8, (0, 127), 0, 20, WrapMode::KnownMsb);
        check(2, (-2, 1), 0, 45, WrapMode::Chain);
    }
}
