//! Max pooling (comparison tree in the ring of the input differences, then one extension per
//! output, [`MaxPoolPlan`]) and average pooling (local window sum, then the plan's exact
//! division `floor((sum·m[n] + 2^(k−1)) / 2^k)` with the multiplier for the counted window
//! size `n`, [`AvgPoolSpec::window_counts`]). Padding never wins a maximum and never enters a
//! sum. Costs: [`MaxPoolPlan::cost`], [`CombinePlan::cost`].

use super::carry::drelu;
use super::cot::mux;
use super::requant::{align, requant};
use super::trunc::rescale;
use super::{ProtocolError, Session, check_len};
use crate::params::nonlinear::{CombinePlan, MaxPoolPlan, pool_windows};
use crate::plan::{AvgPoolSpec, PoolShape};
use crate::ring::Ring;

/// Max pooling as `plan` says of shares `x` (in any ring at least as wide as the comparison
/// ring), output `[C, out_h, out_w]` in `Z_{2^out_bits}`. Each tree level computes
/// `max(a, b) = b + [a − b ≥ 0]·(a − b)` for all pairs at once in the comparison ring; then each
/// maximum is extended into the output ring (shifted by the range's `lo` so that its MSB is
/// known, [`MaxPoolPlan`]) or reduced into it.
///
/// # Errors
/// [`ProtocolError`] on a wrong input length, exhausted OT pads or channel failure.
pub fn max_pool(
    s: &mut Session<'_>,
    plan: &MaxPoolPlan,
    shape: &PoolShape,
    x: &[u64],
) -> Result<Vec<u64>, ProtocolError> {
    check_len(x.len(), shape.channels * shape.in_hw[0] * shape.in_hw[1])?;
    let ring = Ring::new(plan.ring_bits);
    let mut windows: Vec<Vec<u64>> = pool_windows(shape)
        .into_iter()
        .map(|w| w.iter().map(|&i| ring.reduce(x[i])).collect())
        .collect();
    while windows.iter().any(|w| w.len() > 1) {
        let mut diffs = Vec::new();
        let mut base = Vec::new();
        for w in &windows {
            for p in w.chunks_exact(2) {
                diffs.push(ring.sub(p[0], p[1]));
                base.push(p[1]);
            }
        }
        let d = drelu(s, ring, &diffs, plan.depth)?;
        let m = mux(s, ring, &d, &diffs)?;
        let mut next = m.iter().zip(&base).map(|(&v, &b)| ring.add(v, b));
        for w in &mut windows {
            let odd = (w.len() % 2 == 1).then(|| w[w.len() - 1]);
            let pairs = w.len() / 2;
            *w = next.by_ref().take(pairs).chain(odd).collect();
        }
    }
    let max: Vec<u64> = windows
        .into_iter()
        .map(|w| w.first().copied().unwrap_or(0))
        .collect();
    let out = Ring::new(plan.out_bits);
    let Some(extend) = &plan.extend else {
        return Ok(max.into_iter().map(|v| out.reduce(v)).collect());
    };
    // The server's shift by `lo` (modulo 2^64, reduced into each ring).
    let lo = plan.range.0 as u64;
    let server = s.is_server();
    let shifted: Vec<u64> = if server {
        max.iter().map(|&v| ring.sub(v, ring.reduce(lo))).collect()
    } else {
        max
    };
    let y = rescale(s, extend, &shifted)?;
    Ok(if server {
        y.into_iter().map(|v| out.add(v, out.reduce(lo))).collect()
    } else {
        y
    })
}

/// Average pooling (global average pooling: the window is the whole input) of shares in the
/// ring of `plan`'s single input; `plan` comes from
/// [`avg_pool_plan`](crate::params::nonlinear::avg_pool_plan) for the same `spec`.
///
/// # Errors
/// [`ProtocolError::Length`] if a counted window size has no multiplier; otherwise as
/// [`requant`].
pub fn avg_pool(
    s: &mut Session<'_>,
    plan: &CombinePlan,
    spec: &AvgPoolSpec,
    x: &[u64],
) -> Result<Vec<u64>, ProtocolError> {
    let shape = &spec.pool;
    check_len(x.len(), shape.channels * shape.in_hw[0] * shape.in_hw[1])?;
    let ring = Ring::new(plan.ring_bits);
    let xa = align(s, plan, 0, x)?;
    let z = pool_windows(shape)
        .iter()
        .zip(spec.window_counts())
        .map(|(w, counted)| {
            let m = spec.multiplier(counted).ok_or(ProtocolError::Length {
                expected: counted,
                actual: spec.requant.multipliers.len(),
            })?;
            let sum = w.iter().fold(0, |acc, &i| ring.add(acc, xa[i]));
            Ok(ring.mul(sum, ring.from_signed(m)))
        })
        .collect::<Result<Vec<u64>, ProtocolError>>()?;
    requant(s, &plan.requant, &z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::nonlinear::{self as cost};
    use crate::nonlinear::testutil::{open, round_shift, run, share, values};
    use crate::params::nonlinear::{ParamError, WrapMode, avg_pool_plan, pool_window_sizes};
    use crate::plan::{CarryDepth, Requant, Rounding};

    fn shape(c: usize, hw: usize, k: usize, stride: usize, pad: usize) -> PoolShape {
        PoolShape {
            channels: c,
            in_hw: [hw, hw],
            kernel: [k, k],
            stride: [stride, stride],
            pads: [pad; 4],
        }
    }

    /// Runs max pooling of `v` (shared in `Z_{2^in_bits}`) as `plan` says, asserting its exact
    /// cost, and checks every output against the window maximum (reduced into the output ring).
    fn check_max_pool(plan: &MaxPoolPlan, sh: &PoolShape, in_bits: u32, v: &[i128], seed: u64) {
        for depth in [CarryDepth::Ripple, CarryDepth::Tree] {
            let plan = MaxPoolPlan {
                depth,
                ..plan.clone()
            };
            check_max_pool_at(&plan, sh, in_bits, v, seed);
        }
    }

    /// [`check_max_pool`] at the plan's carry depth.
    fn check_max_pool_at(plan: &MaxPoolPlan, sh: &PoolShape, in_bits: u32, v: &[i128], seed: u64) {
        let (xs, xc) = share(Ring::new(in_bits), v, seed);
        let wins = pool_windows(sh);
        let (p, sh2) = (plan.clone(), sh.clone());
        let (a, b) = run(plan.cost(wins.len() as u64), move |s| {
            max_pool(s, &p, &sh2, if s.is_server() { &xs } else { &xc })
        });
        let out = Ring::new(plan.out_bits);
        let got = open(out, &a, &b);
        for (o, w) in wins.iter().enumerate() {
            let max = w.iter().map(|&i| v[i]).max().expect("non-empty window");
            let expect = i128::from(out.to_signed(out.reduce(max as u64)));
            assert_eq!(got[o], expect, "window {o} of {:?}, plan {plan:?}", w);
        }
    }

    /// Every combination of `len` values of `range`, one window each (`[C, 1, len]` input, a
    /// `1 × len` kernel).
    fn every_window(range: (i128, i128), len: usize) -> (PoolShape, Vec<i128>) {
        let span = (range.1 - range.0 + 1) as usize;
        let windows = span.pow(len as u32);
        let v = (0..windows)
            .flat_map(|mut k| {
                (0..len).map(move |_| {
                    let d = k % span;
                    k /= span;
                    range.0 + d as i128
                })
            })
            .collect();
        let sh = PoolShape {
            channels: windows,
            in_hw: [1, len],
            kernel: [1, len],
            stride: [1, len],
            pads: [0; 4],
        };
        (sh, v)
    }

    #[test]
    fn max_pool_plan_compares_in_the_difference_ring() {
        // (range, comparison ring): unsigned and signed 4- and 8-bit ranges, a range away
        // from zero, a negative range and a constant.
        for (range, bits) in [
            ((0, 15), 5),
            ((-8, 7), 5),
            ((0, 255), 9),
            ((-128, 127), 9),
            ((100, 115), 5),
            ((-9, -6), 3),
            ((3, 3), 2),
        ] {
            let p = MaxPoolPlan::new(range, &[4, 4, 2], 20).expect("plan");
            assert_eq!((p.ring_bits, p.levels.clone()), (bits, vec![5, 2]));
            // The extension of max − lo knows the MSB: one correlated OT per output.
            let e = p.extend.expect("extension");
            assert_eq!(
                (e.in_bits, e.out_bits, e.shift, e.offset, e.wrap),
                (bits, 20, 0, 0, WrapMode::KnownMsb)
            );
            assert_eq!(
                p.cost(3),
                cost::max_pool(&[5, 2], bits, CarryDepth::Ripple)
                    + cost::client_cots(3, 3 * u64::from(20 - bits))
            );
            // An output ring no wider than the comparison ring is a local reduction.
            let narrow = MaxPoolPlan::new(range, &[4], bits).expect("plan");
            assert_eq!(narrow.extend, None);
            assert_eq!(
                narrow.cost(1),
                cost::max_pool(&[2, 1], bits, CarryDepth::Ripple)
            );
        }
        assert!(matches!(
            MaxPoolPlan::new((5, 4), &[4], 8),
            Err(ParamError::EmptyRange { .. })
        ));
        assert!(matches!(
            MaxPoolPlan::new((-(1 << 60), 1 << 60), &[4], 62),
            Err(ParamError::RingBits { bits: 63 })
        ));
    }

    #[test]
    fn max_pool_exhaustive_on_small_ranges() {
        // Every window of 4 (two levels) and of 3 (an odd element passing a level) over
        // small signed, unsigned and offset ranges; outputs reduced into a narrower ring, kept
        // in the comparison ring, or extended.
        for range in [(0, 3), (-2, 1), (-4, -1), (5, 8), (2, 2), (-3, 4)] {
            for len in [4, 3, 1] {
                let (sh, v) = every_window(range, len);
                let bits = MaxPoolPlan::comparison_bits(range);
                for out_bits in [bits - 1, bits, bits + 1, 13]
                    .into_iter()
                    .filter(|&b| b >= 2)
                {
                    let plan =
                        MaxPoolPlan::new(range, &pool_window_sizes(&sh), out_bits).expect("plan");
                    // Shares in a ring wider than the comparison ring.
                    check_max_pool(&plan, &sh, 11, &v, u64::from(out_bits));
                }
            }
        }
    }

    #[test]
    fn max_pool_exact() {
        for (sh, range, in_bits, out_bits) in [
            (shape(3, 8, 2, 2, 0), (0, 255), 9, 20),
            (shape(3, 8, 2, 2, 0), (-128, 127), 16, 15),
            (shape(2, 7, 3, 2, 1), (-64, 63), 9, 8),
            (shape(2, 7, 3, 2, 1), (0, 65535), 28, 24),
            (shape(1, 5, 5, 1, 0), (-20, 11), 6, 6),
        ] {
            let n = sh.channels * sh.in_hw[0] * sh.in_hw[1];
            let v = values(range.0, range.1, n, 4);
            let plan = MaxPoolPlan::new(range, &pool_window_sizes(&sh), out_bits).expect("plan");
            check_max_pool(&plan, &sh, in_bits, &v, 5);
        }
    }

    #[test]
    fn avg_pool_exact_with_and_without_padding() {
        let range = (-8i128, 7i128);
        // ceil_mode: 8×8, 3×3 stride 2, pad 1 → 5×5 windows (floor mode: 4×4), one row and
        // column past the padding (ceil_pads [1, 1]); with count_include_pad the last row and
        // column of windows count 2 of their 3 positions.
        let ceil = PoolShape {
            pads: [1, 1, 2, 2],
            ..shape(2, 8, 3, 2, 1)
        };
        for (sh, include, ceil_pads) in [
            (shape(2, 6, 3, 2, 1), false, [0, 0]),
            (shape(2, 6, 3, 2, 1), true, [0, 0]),
            (shape(4, 4, 4, 1, 0), true, [0, 0]),
            (ceil.clone(), false, [1, 1]),
            (ceil, true, [1, 1]),
        ] {
            let full = sh.kernel[0] * sh.kernel[1];
            // m[n] ≈ 2^12 / n.
            let multipliers: Vec<i64> = (1..=full as i64).map(|n| (4096 + n / 2) / n).collect();
            let spec = AvgPoolSpec {
                pool: sh.clone(),
                count_include_pad: include,
                requant: Requant {
                    multipliers,
                    shift: 12,
                    clamp: (-8, 7),
                    rounding: Rounding::HalfEven,
                },
                ceil_pads,
            };
            let plan = avg_pool_plan(&spec, 4, range, 4).expect("plan");
            let n = sh.channels * sh.in_hw[0] * sh.in_hw[1];
            let v = values(range.0, range.1, n, 6);
            let (xs, xc) = share(Ring::new(4), &v, 7);
            let wins = pool_windows(&sh);
            let (p, sp) = (plan.clone(), spec.clone());
            let (a, b) = run(plan.cost(&[n as u64], wins.len() as u64), move |s| {
                avg_pool(s, &p, &sp, if s.is_server() { &xs } else { &xc })
            });
            let got = open(Ring::new(4), &a, &b);
            let counts = spec.window_counts();
            for (o, w) in wins.iter().enumerate() {
                let cnt = counts[o];
                let clipped = |o: usize| if o == 4 { 2 } else { 3 };
                let expected = match (include, ceil_pads) {
                    (true, [0, 0]) => full,
                    (true, _) => clipped(o % 25 / 5) * clipped(o % 5),
                    (false, _) => w.len(),
                };
                assert_eq!(cnt, expected, "window {o}");
                let sum: i128 = w.iter().map(|&i| v[i]).sum();
                let z = sum * i128::from(spec.requant.multipliers[cnt - 1]);
                assert_eq!(got[o], round_shift(z, 12, Rounding::HalfEven).clamp(-8, 7));
            }
        }
    }
}
