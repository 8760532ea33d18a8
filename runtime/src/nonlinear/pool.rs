//! Max pooling (comparison tree) and average pooling (local window sum, then the plan's exact
//! division `floor((sum·m[n] + 2^(k−1)) / 2^k)` with the multiplier for the counted window
//! size `n`, [`AvgPoolSpec::window_counts`]). Padding never wins a maximum and never enters a sum. Costs:
//! [`crate::cost::nonlinear::max_pool`], [`CombinePlan::cost`].

use super::carry::drelu;
use super::cot::mux;
use super::requant::{align, requant};
use super::{ProtocolError, Session, check_len};
use crate::params::nonlinear::{CombinePlan, ParamError, fits_signed, pool_windows};
use crate::plan::{AvgPoolSpec, PoolShape};
use crate::ring::Ring;

/// Max pooling of shares in `ring` whose values lie in `range`; output `[C, out_h, out_w]`.
/// Each tree level computes `max(a, b) = b + [a − b ≥ 0]·(a − b)` for all pairs at once.
///
/// # Errors
/// [`ParamError::RangeTooWide`] if `a − b` does not fit the ring; otherwise on exhausted OT
/// pads or channel failure.
pub fn max_pool(
    s: &mut Session<'_>,
    ring: Ring,
    range: (i128, i128),
    shape: &PoolShape,
    x: &[u64],
) -> Result<Vec<u64>, ProtocolError> {
    check_len(x.len(), shape.channels * shape.in_hw[0] * shape.in_hw[1])?;
    let diff = (range.0 - range.1, range.1 - range.0);
    if !fits_signed(diff, ring.bits()) {
        return Err(ParamError::RangeTooWide {
            lo: diff.0,
            hi: diff.1,
            bits: ring.bits(),
        }
        .into());
    }
    let mut windows: Vec<Vec<u64>> = pool_windows(shape)
        .into_iter()
        .map(|w| w.iter().map(|&i| x[i]).collect())
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
        let d = drelu(s, ring, &diffs)?;
        let m = mux(s, ring, &d, &diffs)?;
        let mut next = m.iter().zip(&base).map(|(&v, &b)| ring.add(v, b));
        for w in &mut windows {
            let odd = (w.len() % 2 == 1).then(|| w[w.len() - 1]);
            let pairs = w.len() / 2;
            *w = next.by_ref().take(pairs).chain(odd).collect();
        }
    }
    Ok(windows
        .into_iter()
        .map(|w| w.first().copied().unwrap_or(0))
        .collect())
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
    use crate::params::nonlinear::{avg_pool_plan, max_pool_levels};
    use crate::plan::{Requant, Rounding};

    fn shape(c: usize, hw: usize, k: usize, stride: usize, pad: usize) -> PoolShape {
        PoolShape {
            channels: c,
            in_hw: [hw, hw],
            kernel: [k, k],
            stride: [stride, stride],
            pads: [pad; 4],
        }
    }

    #[test]
    fn max_pool_exact() {
        for (sh, bits) in [
            (shape(3, 8, 2, 2, 0), 8u32),
            (shape(2, 7, 3, 2, 1), 9),
            (shape(1, 5, 5, 1, 0), 6),
        ] {
            let ring = Ring::new(bits);
            let q = 1i128 << (bits - 2);
            let range = (-q, q - 1);
            let n = sh.channels * sh.in_hw[0] * sh.in_hw[1];
            let v = values(range.0, range.1, n, 4);
            let (xs, xc) = share(ring, &v, 5);
            let wins = pool_windows(&sh);
            let sizes: Vec<usize> = wins.iter().map(Vec::len).collect();
            let c = cost::max_pool(&max_pool_levels(&sizes), bits);
            let sh2 = sh.clone();
            let (a, b) = run(c, move |s| {
                max_pool(s, ring, range, &sh2, if s.is_server() { &xs } else { &xc })
            });
            let got = open(ring, &a, &b);
            for (o, w) in wins.iter().enumerate() {
                let expect = w.iter().map(|&i| v[i]).max().expect("non-empty window");
                assert_eq!(got[o], expect);
            }
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
