//! Tie analysis: can a requantization `round(t / 2^k)` meet a tie `t ≡ 2^(k−1) (mod 2^k)`?
//!
//! Requantizations round to nearest with ties to even (plan semantics). Where no value inside
//! the tensor ranges can produce a tie, the plan marks the requantization
//! [`Rounding::NoTies`], and the protocols may round half up, which is cheaper on shares.
//!
//! - One term `t = x·m`: a tie needs the largest power of two dividing `x·m` to be `2^(k−1)`,
//!   i.e. `v2(x) = k − 1 − v2(m)`, which needs `|x| ≥ 2^(k−1−v2(m))`. No tie when `m = 0`,
//!   `v2(m) ≥ k`, or every `|x|` is below that power.
//! - Several terms (residual add): `t` is a multiple of `2^g`, `g` the smallest `v2(m_i)`; no tie
//!   when `g ≥ k` or `|t| < 2^(k−1)` for every reachable `t`.
//!
//! Average pooling divides a window sum `S` by its count `c`. Where the pool's scale ratio is a
//! power of two `2^e` (an average re-quantized at its input's scale: `e = 0`), the exact quotient
//! `v = S·2^e / c` ties whenever `2^(e+1)·S ≡ c (mod 2c)`, but for a count with an odd factor
//! `m_c / 2^k` cannot equal `2^e / c`, so `t = S·m_c` misses the midpoint by
//! `S·ε_c` (`ε_c = m_c − 2^(k+e)/c`). [`pool_tie_window`] widens the tie to a window that holds
//! those near-ties and nothing else ([`Rounding::HalfEvenWithin`]):
//!
//! - `|S·ε_c| ≤ c·X·|ε_c| = X·|c·m_c − 2^(k+e)|` (`|x| ≤ X`, at most `c` terms): the window
//!   `δ = X·max_c |c·m_c − 2^(k+e)|` holds every near-tie.
//! - A quotient that is not a tie is at least `g_c = 2^min(0, e+1) / (2c)` from a half-integer
//!   (`v − (j + ½) = (2^(e+1)·S − c·(2j+1)) / 2c`), so its remainder is at least
//!   `2^k·g_c − δ` from the midpoint: outside the window, and rounded as `v` is, when
//!   `2^k·g_c > 2δ`. The shift grows until that holds.

use heq_runtime::plan::Rounding;

/// Rounding of `round(x·m[c] / 2^k)` for every multiplier, `|x| ≤ max_abs`.
pub fn single_term(multipliers: &[i64], shift: u32, max_abs: i128) -> Rounding {
    let tie_free = |m: i64| {
        if m == 0 || shift == 0 || m.trailing_zeros() >= shift {
            return true;
        }
        let exp = shift - 1 - m.trailing_zeros();
        exp >= 127 || max_abs < 1i128 << exp
    };
    if multipliers.iter().all(|&m| tie_free(m)) {
        Rounding::NoTies
    } else {
        Rounding::HalfEven
    }
}

/// Rounding of `round(Σ x_i·m_i / 2^k)` with `|x_i| ≤ max_abs_i`; `terms` = `(max_abs_i, m_i)`.
pub fn sum_of_terms(terms: &[(i128, i64)], shift: u32) -> Rounding {
    if let [(max_abs, m)] = terms {
        return single_term(&[*m], shift, *max_abs);
    }
    let g = terms
        .iter()
        .map(|&(_, m)| m.trailing_zeros())
        .min()
        .unwrap_or(64);
    let bound = terms.iter().try_fold(0i128, |s, &(x, m)| {
        s.checked_add(x.checked_mul(i128::from(m).abs())?)
    });
    let below_half = |b: i128| (1..=127).contains(&shift) && b < 1i128 << (shift - 1);
    if shift == 0 || g >= shift || bound.is_some_and(below_half) {
        Rounding::NoTies
    } else {
        Rounding::HalfEven
    }
}

/// Multipliers, shift and tie window that round an average pool's exact quotients
/// `S·2^e / c` to nearest, ties to even, for the window counts `counts` (see the module doc):
/// `multipliers[c − 1] = round(2^(k+e) / c)` for every `c` up to `max_count`, with `k` the
/// smallest shift from `shift` on that separates ties from other quotients. `None` where the
/// ties need no window at `shift` (no count with reachable ties has an inexact multiplier), or
/// where no shift below 62 separates them.
pub fn pool_tie_window(
    e: i32,
    counts: &[usize],
    max_count: usize,
    x_max_abs: i128,
    shift: u32,
) -> Option<(Vec<i64>, u32, u64)> {
    // Ties are reachable for count c when 2^(e+1)·S = c·(2j + 1) has a solution S.
    let ties_reachable = |c: usize| e + 1 < 0 || c.trailing_zeros() as i32 > e;
    let x = x_max_abs.max(1);
    // 2^k·g_c > 2δ  ⟺  2^k > 4·c·δ·2^extra.
    let extra = u32::try_from(-(e + 1)).unwrap_or(0);
    if extra > 60 {
        return None;
    }
    let first = shift.max(u32::try_from(-e).unwrap_or(0));
    for k in first..62 {
        let exp = i64::from(k) + i64::from(e);
        if exp >= 62 {
            return None;
        }
        let numerator = 1i128 << exp;
        let multipliers: Vec<i64> = (1..=max_count)
            .map(|c| nearest_quotient(numerator, c as i128))
            .collect::<Option<_>>()?;
        let miss = |c: usize| (c as i128 * i128::from(multipliers[c - 1]) - numerator).abs();
        if k == first && !counts.iter().any(|&c| ties_reachable(c) && miss(c) != 0) {
            return None;
        }
        let window = counts.iter().map(|&c| x * miss(c)).max().unwrap_or(0);
        let separated = counts
            .iter()
            .all(|&c| 1i128 << k > (4 * c as i128 * window) << extra);
        if separated {
            return Some((multipliers, k, u64::try_from(window).ok()?));
        }
    }
    None
}

/// `a / b` rounded to nearest, ties to even, if it fits 62 bits.
fn nearest_quotient(a: i128, b: i128) -> Option<i64> {
    let (q, r) = (a / b, a % b);
    let q = match (2 * r).cmp(&b) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Equal => q + (q & 1),
        std::cmp::Ordering::Greater => q + 1,
    };
    (q < 1 << 62).then_some(q as i64)
}

/// Largest `|v|` of a range.
pub fn max_abs((lo, hi): (i64, i64)) -> i128 {
    i128::from(lo).abs().max(i128::from(hi).abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: does any `x` in `[-max_abs, max_abs]` give a tie?
    fn has_tie(terms: &[(i128, i64)], shift: u32) -> bool {
        fn rec(terms: &[(i128, i64)], acc: i128, shift: u32) -> bool {
            match terms.split_first() {
                None => shift > 0 && acc.rem_euclid(1i128 << shift) == 1i128 << (shift - 1),
                Some((&(x, m), rest)) => {
                    (-x..=x).any(|v| rec(rest, acc + v * i128::from(m), shift))
                }
            }
        }
        rec(terms, 0, shift)
    }

    #[test]
    fn no_ties_claims_are_sound_against_brute_force() {
        for shift in 0..7 {
            for m in -20i64..=20 {
                for x in 0..20i128 {
                    if single_term(&[m], shift, x) == Rounding::NoTies {
                        assert!(!has_tie(&[(x, m)], shift), "m {m} k {shift} x {x}");
                    }
                }
                for m2 in [-6i64, 3, 4, 8] {
                    let terms = [(5, m), (3, m2)];
                    if sum_of_terms(&terms, shift) == Rounding::NoTies {
                        assert!(!has_tie(&terms, shift), "{terms:?} k {shift}");
                    }
                }
            }
        }
    }

    /// `n / d` rounded to nearest, ties to even (`d > 0`).
    fn round_rational(n: i128, d: i128) -> i128 {
        let f = n.div_euclid(d);
        match (2 * n.rem_euclid(d)).cmp(&d) {
            std::cmp::Ordering::Less => f,
            std::cmp::Ordering::Equal => f + (f & 1),
            std::cmp::Ordering::Greater => f + 1,
        }
    }

    #[test]
    fn pool_tie_windows_round_every_sum_as_the_exact_quotient() {
        use heq_runtime::ring::round_shift_within;
        for e in -3..=2 {
            for (counts, max_count) in [
                (vec![6], 6),
                (vec![4, 6, 9], 9),
                (vec![2, 3], 4),
                (vec![10, 12], 12),
                (vec![3, 5], 5),
            ] {
                for x in [1i128, 7, 127, 255] {
                    for start in [0u32, 5, 23] {
                        let got = pool_tie_window(e, &counts, max_count, x, start);
                        let Some((ms, k, window)) = got else {
                            // No window: at the first usable shift, every count with reachable
                            // ties divides exactly.
                            let first = start.max((-e).max(0) as u32) as i32;
                            let exact = counts.iter().all(|&c| {
                                let v2 = c.trailing_zeros() as i32;
                                let reachable = e + 1 < 0 || v2 > e;
                                !reachable || c.is_power_of_two() && v2 <= first + e
                            });
                            assert!(exact, "e {e} {counts:?} x {x} from {start}: no window");
                            continue;
                        };
                        assert!(k >= start && ms.len() == max_count);
                        for &c in &counts {
                            let m = i128::from(ms[c - 1]);
                            let cx = c as i128 * x;
                            for sum in -cx..=cx {
                                let (n, d) = (sum << e.max(0), (c as i128) << (-e).max(0));
                                let want = round_rational(n, d);
                                let got = round_shift_within(sum * m, k, window).half_even();
                                assert_eq!(got, want, "e {e} c {c} S {sum} k {k} w {window}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn pool_tie_window_of_a_6_element_window_at_the_input_scale() {
        // m_6 = round(2^23 / 6) = 1398101 misses by 6·m_6 − 2^23 = −2, m_9 = 932068 by 4:
        // window 4·255.
        let (ms, k, window) = pool_tie_window(0, &[4, 6, 9], 9, 255, 23).expect("window");
        assert_eq!((ms[5], ms[8], k, window), (1_398_101, 932_068, 23, 1020));
        assert_eq!(ms[0], 1 << 23);
        // Powers of two and odd counts need none.
        assert_eq!(pool_tie_window(0, &[1, 2, 4, 3, 9], 9, 255, 23), None);
    }

    #[test]
    fn typical_cases() {
        // 24-bit odd multiplier, k = 30, 20-bit accumulators: ties need |acc| ≥ 2^29.
        assert_eq!(single_term(&[0xB5_0001], 30, 1 << 19), Rounding::NoTies);
        // Average of four at the same scale: m = 2^23, k = 25; sums ≡ 2 mod 4 tie.
        assert_eq!(single_term(&[1 << 23], 25, 4 * 255), Rounding::HalfEven);
        assert_eq!(single_term(&[1 << 23], 25, 1), Rounding::NoTies);
        assert_eq!(
            sum_of_terms(&[(255, 1 << 20), (255, 3 << 20)], 20),
            Rounding::NoTies
        );
        assert_eq!(
            sum_of_terms(&[(255, 12_345), (255, 54_321)], 20),
            Rounding::HalfEven
        );
    }
}
