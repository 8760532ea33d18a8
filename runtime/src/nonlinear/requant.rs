//! The plan's requantizations on shares, low precision first: truncate-and-reduce into the
//! smallest ring the clamp's comparisons need (widening only when the output ring asks for it),
//! compare there, and select the clamped value in the output ring.
//!
//! - [`requant`]: `y = clamp(floor((z + 2^(k−1)) / 2^k), lo, hi)` of shares of `z` (linear
//!   layers: the HE layer has already applied the server-private multipliers);
//! - [`rescale_public`], [`add`]: the plan's `Rescale` and residual `Add` (public multipliers,
//!   computed locally after aligning the inputs' rings, see [`CombinePlan`]);
//! - [`unpack`]: HEQuant packed fields (`protocols.md` §3.5) into the ring the requantization
//!   combines in.
//!
//! Zero points are handled at the I/O boundary (plan values are centred), so no zero-point
//! addition appears here; the clamp bounds are arbitrary.

use super::cot::{client_cots, mask};
use super::relu::clamp;
use super::trunc::rescale;
use super::{ProtocolError, Session, check_len};
use crate::params::nonlinear::{CombinePlan, RequantPlan, UnpackPlan};
use crate::ring::Ring;

/// Runs a [`RequantPlan`]: shares of `z` in `Z_{2^l}` to shares of `y` in `Z_{2^R}`.
///
/// # Errors
/// [`ProtocolError`] on exhausted OT pads or channel failure.
pub fn requant(
    s: &mut Session<'_>,
    plan: &RequantPlan,
    z: &[u64],
) -> Result<Vec<u64>, ProtocolError> {
    let t = rescale(s, &plan.rescale, z)?;
    clamp(s, &plan.clamp, &t)
}

/// Brings input `input` of a [`CombinePlan`] into the combination ring: extension if its ring
/// is narrower, local reduction otherwise.
///
/// # Errors
/// As [`requant`].
pub fn align(
    s: &mut Session<'_>,
    plan: &CombinePlan,
    input: usize,
    x: &[u64],
) -> Result<Vec<u64>, ProtocolError> {
    match plan.inputs.get(input).and_then(|i| i.2.as_ref()) {
        Some(ext) => rescale(s, ext, x),
        None => Ok(x.iter().map(|&v| v & mask(plan.ring_bits)).collect()),
    }
}

/// The plan's `Rescale`: `y = clamp(floor((x·m[c] + 2^(k−1)) / 2^k), lo, hi)` with public
/// per-channel multipliers (`multipliers.len() == 1`: one for the whole tensor; otherwise
/// element `i` is in channel `i / per_channel`).
///
/// # Errors
/// [`ProtocolError::Length`] if the multipliers do not cover the channels; otherwise as
/// [`requant`].
pub fn rescale_public(
    s: &mut Session<'_>,
    plan: &CombinePlan,
    x: &[u64],
    multipliers: &[i64],
    per_channel: usize,
) -> Result<Vec<u64>, ProtocolError> {
    if multipliers.len() != 1 {
        check_len(x.len(), multipliers.len() * per_channel)?;
    }
    let ring = Ring::new(plan.ring_bits);
    let xa = align(s, plan, 0, x)?;
    let z: Vec<u64> = xa
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let m = if multipliers.len() == 1 {
                multipliers[0]
            } else {
                multipliers[i / per_channel.max(1)]
            };
            ring.mul(v, ring.from_signed(m))
        })
        .collect();
    requant(s, &plan.requant, &z)
}

/// Residual add: `y = clamp(floor((a·m_a + b·m_b + 2^(k−1)) / 2^k), lo, hi)`.
///
/// # Errors
/// [`ProtocolError::Length`] if `a` and `b` differ in length; otherwise as [`requant`].
pub fn add(
    s: &mut Session<'_>,
    plan: &CombinePlan,
    a: &[u64],
    b: &[u64],
    m: (i64, i64),
) -> Result<Vec<u64>, ProtocolError> {
    check_len(b.len(), a.len())?;
    let ring = Ring::new(plan.ring_bits);
    let aa = align(s, plan, 0, a)?;
    let ba = align(s, plan, 1, b)?;
    let (ma, mb) = (ring.from_signed(m.0), ring.from_signed(m.1));
    let z: Vec<u64> = aa
        .iter()
        .zip(&ba)
        .map(|(&x, &y)| ring.add(ring.mul(x, ma), ring.mul(y, mb)))
        .collect();
    requant(s, &plan.requant, &z)
}

/// HEQuant unpacking ([`UnpackPlan`]): shares in `Z_{2^l}` of `n` packed words to shares in
/// `Z_{2^R}` of their `n·b` fields, word-major (output `i·b + j` is field `j` of word `i`, the
/// order of `Layout::word_fields`).
///
/// # Errors
/// As [`requant`].
pub fn unpack(
    s: &mut Session<'_>,
    plan: &UnpackPlan,
    z: &[u64],
) -> Result<Vec<u64>, ProtocolError> {
    let (l, b, sb, r) = (plan.in_bits, plan.fields, plan.field_bits, plan.out_bits);
    let (ring, out) = (Ring::new(l), Ring::new(r));
    let server = s.is_server();
    // Every field from the HE layer's bias 2^(s−1) to 2^(s−2): no field reaches bit s − 1.
    let rebias = (0..b).fold(0u64, |acc, j| {
        ring.add(acc, ring.reduce((1u64 << (sb - 2)) << (j * sb)))
    });
    let y: Vec<u64> = z
        .iter()
        .map(|&v| if server { ring.sub(v, rebias) } else { v })
        .collect();
    let k = plan.carries();
    // This party's bit j·s − 1 of each word, for the carries c_1 … c_k.
    let bits: Vec<bool> = y
        .iter()
        .flat_map(|&v| (1..=k).map(move |j| (v >> (j * sb - 1)) & 1 == 1))
        .collect();
    let widths = vec![r; bits.len()];
    let (choices, deltas) = if server {
        (Vec::new(), bits.iter().map(|&m| u64::from(m)).collect())
    } else {
        (bits.clone(), Vec::new())
    };
    // Shares of m_S ∧ m_C; the carry m_S ∨ m_C = m_S + m_C − m_S·m_C.
    let and = client_cots(s, &choices, &deltas, &widths)?;
    let carry = |i: usize, j: u32| -> u64 {
        if j == 0 || j > k {
            return 0;
        }
        let idx = i * k as usize + (j - 1) as usize;
        out.sub(u64::from(bits[idx]), and[idx])
    };
    let field_mask = mask(sb);
    let centre = if server {
        out.reduce(1u64 << (sb - 2))
    } else {
        0
    };
    let mut fields = Vec::with_capacity(y.len() * b as usize);
    for (i, &v) in y.iter().enumerate() {
        for j in 0..b {
            let local = out.reduce((v >> (j * sb)) & field_mask);
            let high = out.mul(carry(i, j + 1), out.reduce(1u64 << sb));
            let f = out.sub(out.add(local, carry(i, j)), out.add(high, centre));
            fields.push(f);
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nonlinear::testutil::{
        check_faithful, every_split, open, round_shift, run, share, values, with_ties,
    };
    use crate::params::nonlinear::{add_plan, rescale_plan};
    use crate::plan::{AddSpec, PackDim, Packing, Requant, Rounding};

    fn packing(factor: u32, field_bits: u32) -> Packing {
        Packing {
            factor,
            field_bits,
            dim: PackDim::Spatial,
        }
    }

    fn reference(z: i128, k: u32, clamp: (i128, i128), rounding: Rounding) -> i128 {
        round_shift(z, k, rounding).clamp(clamp.0, clamp.1)
    }

    #[test]
    fn requant_16_to_4_fused_relu() {
        let range = (-(1i128 << 14) + 1, (1 << 14) - 513);
        for rounding in [Rounding::NoTies, Rounding::HalfEven] {
            let plan = RequantPlan::new(16, range, 10, (0, 15), 5, rounding).expect("plan");
            let ring = Ring::new(16);
            let mut v = values(range.0, range.1, 2000, 1);
            with_ties(&mut v, range, 10, 0);
            let (zs, zc) = share(ring, &v, 2);
            let (a, b) = run(plan.cost(2000), move |s| {
                requant(s, &plan, if s.is_server() { &zs } else { &zc })
            });
            let got = open(Ring::new(5), &a, &b);
            for i in 0..v.len() {
                let want = reference(v[i], 10, (0, 15), rounding);
                assert_eq!(got[i], want, "z {} {rounding:?}", v[i]);
            }
        }
    }

    #[test]
    fn requant_widths_and_clamps() {
        for (l, range, k, clamp, out) in [
            (
                37u32,
                (-(1i128 << 30), 1i128 << 30),
                22u32,
                (-128i128, 127i128),
                8u32,
            ),
            (20, (-(1 << 19), (1 << 19) - 2049), 12, (0, 63), 7),
            (24, (-5000, 5000), 0, (-2, 2), 3),
            (45, (-(1 << 43), 1 << 43), 40, (-7, 7), 4),
            (12, (-2048, 2043), 3, (-1000, 1000), 12),
        ] {
            for rounding in [Rounding::NoTies, Rounding::HalfEven] {
                check_requant(l, range, k, clamp, out, rounding);
            }
        }
    }

    /// Requantizes 700 values of `range` (ties and the tie window's edges among them) on shares
    /// and checks every result against the reference.
    fn check_requant(
        l: u32,
        range: (i128, i128),
        k: u32,
        clamp: (i128, i128),
        out: u32,
        rounding: Rounding,
    ) {
        let plan = RequantPlan::new(l, range, k, clamp, out, rounding).expect("plan");
        let mut v = values(range.0, range.1, 700, u64::from(l));
        with_ties(&mut v, range, k, rounding.tie_window().unwrap_or(0));
        let (zs, zc) = share(Ring::new(l), &v, 3);
        let (a, b) = run(plan.cost(700), move |s| {
            requant(s, &plan, if s.is_server() { &zs } else { &zc })
        });
        let got = open(Ring::new(out), &a, &b);
        for i in 0..v.len() {
            let want = reference(v[i], k, clamp, rounding);
            assert_eq!(got[i], want, "l {l} k {k} z {} {rounding:?}", v[i]);
        }
    }

    #[test]
    fn faithful_requant_is_within_one_of_the_exact_value_for_every_share_split() {
        for (l, range, k, clamp, out) in [
            (8u32, (-100i128, 100i128), 3u32, (-8i128, 7i128), 4u32),
            (8, (-128, 100), 4, (0, 15), 5),
            (7, (-30, 30), 1, (-64, 63), 7),
        ] {
            let faithful =
                RequantPlan::new(l, range, k, clamp, out, Rounding::Faithful).expect("plan");
            let exact =
                RequantPlan::new(l, range, k, clamp, out, Rounding::HalfEven).expect("plan");
            let (v, zs, zc) = every_split(Ring::new(l), range);
            let n = v.len() as u64;
            assert!(faithful.cost(n).total_bytes() < exact.cost(n).total_bytes());
            let (a, b) = run(faithful.cost(n), move |s| {
                requant(s, &faithful, if s.is_server() { &zs } else { &zc })
            });
            let got = open(Ring::new(out), &a, &b);
            check_faithful(&v, &got, l, k, clamp);
            for (&z, &y) in v.iter().zip(&got) {
                let want = reference(z, k, clamp, Rounding::HalfEven);
                assert!((y - want).abs() <= 1, "z {z}: {y} against {want}");
            }
        }
    }

    #[test]
    fn requant_with_tie_windows() {
        for (l, range, k, clamp, out, window) in [
            (
                37u32,
                (-(1i128 << 30), 1i128 << 30),
                22u32,
                (-128, 127),
                8u32,
                1u64 << 18,
            ),
            (16, (-(1 << 13), 1 << 13), 6, (0, 15), 5, 5),
        ] {
            check_requant(l, range, k, clamp, out, Rounding::HalfEvenWithin(window));
        }
    }

    #[test]
    fn activation_widths_2_to_16() {
        for b in 2u32..=16 {
            let l = (b + 20).min(45);
            let range = (-(1i128 << (l - 3)), (1i128 << (l - 3)) - (1 << (l - 4)));
            let k = l - 3 - b;
            let clamp = (-(1i128 << (b - 1)), (1i128 << (b - 1)) - 1);
            let plan = RequantPlan::new(l, range, k, clamp, b, Rounding::HalfEven).expect("plan");
            let mut v = values(range.0, range.1, 300, u64::from(b));
            with_ties(&mut v, range, k, 0);
            let (zs, zc) = share(Ring::new(l), &v, 13);
            let (a, c) = run(plan.cost(300), move |s| {
                requant(s, &plan, if s.is_server() { &zs } else { &zc })
            });
            let got = open(Ring::new(b), &a, &c);
            for i in 0..v.len() {
                let want = reference(v[i], k, clamp, Rounding::HalfEven);
                assert_eq!(got[i], want, "b {b} z {}", v[i]);
            }
        }
    }

    #[test]
    fn residual_add_with_alignment() {
        // a: 8-bit ring (range ±100), b: 20-bit ring (range ±3000); z = 7a − 3b.
        let (ra, rb) = ((-100i128, 100i128), (-3000i128, 3000i128));
        let spec = AddSpec {
            m_a: 7,
            m_b: -3,
            shift: 5,
            clamp: (-128, 127),
            rounding: Rounding::HalfEven,
        };
        let plan = add_plan(&spec, (8, ra), (20, rb), 8).expect("plan");
        let mut a = values(ra.0, ra.1, 400, 5);
        // Ties: 7·1 − 3·(−3) = 16 = 0.5·32 and 7·3 − 3·(−9) = 48 = 1.5·32.
        (a[10], a[11]) = (1, 3);
        let mut b = values(rb.0, rb.1, 400, 6);
        (b[10], b[11]) = (-3, -9);
        let (as_, ac) = share(Ring::new(8), &a, 7);
        let (bs, bc) = share(Ring::new(20), &b, 8);
        let p = plan.clone();
        let (x, y) = run(plan.cost(&[400, 400], 400), move |s| {
            if s.is_server() {
                add(s, &p, &as_, &bs, (7, -3))
            } else {
                add(s, &p, &ac, &bc, (7, -3))
            }
        });
        let got = open(Ring::new(8), &x, &y);
        for i in 0..400 {
            let want = reference(7 * a[i] - 3 * b[i], 5, (-128, 127), Rounding::HalfEven);
            assert_eq!(got[i], want);
        }
    }

    #[test]
    fn public_rescale_per_channel() {
        let r = (-50i128, 60i128);
        let ms = [3i64, -5, 11];
        let spec = Requant {
            multipliers: ms.to_vec(),
            shift: 2,
            clamp: (0, 127),
            rounding: Rounding::HalfEven,
        };
        let plan = rescale_plan(&spec, (7, r), 8).expect("plan");
        let v = values(r.0, r.1, 300, 9);
        let (xs, xc) = share(Ring::new(7), &v, 10);
        let p = plan.clone();
        let (a, b) = run(plan.cost(&[300], 300), move |s| {
            rescale_public(s, &p, if s.is_server() { &xs } else { &xc }, &ms, 100)
        });
        let got = open(Ring::new(8), &a, &b);
        for i in 0..300 {
            assert_eq!(
                got[i],
                reference(
                    v[i] * i128::from(ms[i / 100]),
                    2,
                    (0, 127),
                    Rounding::HalfEven
                )
            );
        }
    }

    #[test]
    fn unpack_fields_into_any_ring() {
        // (l, b, s, R): R below, equal to and above s.
        for (l, fields, s_bits, r) in [
            (37u32, 2u32, 18u32, 40u32),
            (45, 3, 15, 12),
            (30, 3, 10, 10),
            (16, 2, 8, 30),
        ] {
            let fr = (-(1i128 << (s_bits - 2)), (1i128 << (s_bits - 2)) - 1);
            let plan =
                UnpackPlan::new(l, packing(fields, s_bits), fr, r.max(s_bits - 1)).expect("plan");
            let n = 300;
            let f: Vec<Vec<i128>> = (0..fields)
                .map(|j| {
                    let mut v = values(fr.0, fr.1, n, u64::from(j + 20));
                    (v[0], v[1]) = (fr.0, fr.1);
                    v
                })
                .collect();
            // The HE layer's words: every field biased by 2^(s−1).
            let ring = Ring::new(l);
            let words: Vec<i128> = (0..n)
                .map(|i| {
                    let w: i128 = (0..fields)
                        .map(|j| (f[j as usize][i] + (1 << (s_bits - 1))) << (j * s_bits))
                        .sum();
                    i128::from(ring.to_signed(ring.reduce(w as u64)))
                })
                .collect();
            let (zs, zc) = share(ring, &words, 12);
            let (a, b) = run(plan.cost(n as u64), move |s| {
                unpack(s, &plan, if s.is_server() { &zs } else { &zc })
            });
            let got = open(Ring::new(plan.out_bits), &a, &b);
            for i in 0..n {
                for j in 0..fields as usize {
                    assert_eq!(
                        got[i * fields as usize + j],
                        f[j][i],
                        "l {l} r {r} field {j}"
                    );
                }
            }
        }
    }
}
