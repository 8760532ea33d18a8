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
